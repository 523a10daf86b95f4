/* What every driver shares: choosing one, and the reasons calls fail with. */
#include "config.h"
#include "ufs/ufs.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const struct ufs_ops *ufs_driver_for(const char *source)
{
	if (!strncmp(source, "file://", 7) || !strstr(source, "://"))
		return &ufs_local_ops;
	if (!strncmp(source, "s3://", 5))
		return &ufs_s3_ops;
	if (!strncmp(source, "http://", 7) || !strncmp(source, "https://", 8))
		return &ufs_http_ops;
	return NULL;
}

void ufs_call_err(struct ufs_call *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}
