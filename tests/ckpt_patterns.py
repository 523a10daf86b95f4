#!/usr/bin/python3
"""Test helper: what checkpoint writers do at the syscall level, done in a
mount. Each file's expected bytes go to OUT under the same relative name,
so that the caller can compare them with what the source holds.

  ckpt_patterns.py MNT OUT OTHER    (OTHER: a folder on another file system)

- torch.save over ckpt.pt (O_CREAT|O_TRUNC, sequential writes, close), then
  torch.load back (12 MiB: a multipart upload on S3 with 5M parts);
- a distributed checkpoint: dcp/.metadata.tmp, fsync, unlink dcp/.metadata,
  rename over it, three times;
- safetensors-style: mkstemp in model/, write, chmod 0640, os.replace over
  model/model.safetensors, twice;
- Lightning-style shutil.move of last.ckpt from OTHER (copy2: mtime
  1600000000 and mode 0600 kept, then unlink of the source);
- log.txt appended, overwritten in place, read back through the same
  O_RDWR handle, and ftruncated.
"""
import os
import shutil
import sys
import tempfile

import torch

m, out, other = sys.argv[1:]


def keep(name, data):
    path = os.path.join(out, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


state = {"w": torch.arange(3 << 20, dtype=torch.float32), "step": 7}
torch.save(state, os.path.join(m, "ckpt.pt"))
back = torch.load(os.path.join(m, "ckpt.pt"))
assert back["step"] == 7 and torch.equal(back["w"], state["w"])
keep("ckpt.pt", open(os.path.join(m, "ckpt.pt"), "rb").read())
print("ok - torch.save of a 12 MiB state dict, torch.load back")

os.makedirs(os.path.join(m, "dcp"), exist_ok=True)
for gen in range(3):
    tmp = os.path.join(m, "dcp", ".metadata.tmp")
    with open(tmp, "wb") as f:
        f.write(b"meta %d " % gen * 1000)
        f.flush()
        os.fsync(f.fileno())
    if os.path.exists(os.path.join(m, "dcp", ".metadata")):
        os.unlink(os.path.join(m, "dcp", ".metadata"))
    os.rename(tmp, os.path.join(m, "dcp", ".metadata"))
assert not os.path.exists(os.path.join(m, "dcp", ".metadata.tmp"))
keep("dcp/.metadata", b"meta 2 " * 1000)
print("ok - .metadata.tmp + fsync + unlink + rename over, three generations")

os.makedirs(os.path.join(m, "model"), exist_ok=True)
for gen in range(2):
    fd, tmp = tempfile.mkstemp(dir=os.path.join(m, "model"), prefix=".tmp")
    payload = os.urandom(5 << 20)
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
    os.chmod(tmp, 0o640)
    os.replace(tmp, os.path.join(m, "model", "model.safetensors"))
assert sorted(os.listdir(os.path.join(m, "model"))) == ["model.safetensors"]
keep("model/model.safetensors", payload)
print("ok - mkstemp + chmod + os.replace over the target, twice")

payload = os.urandom(9 << 20)
src = os.path.join(other, "last.ckpt")
with open(src, "wb") as f:
    f.write(payload)
os.utime(src, (1600000000, 1600000000))
os.chmod(src, 0o600)
shutil.move(src, os.path.join(m, "last.ckpt"))
assert not os.path.exists(src)
st = os.stat(os.path.join(m, "last.ckpt"))
assert int(st.st_mtime) == 1600000000 and st.st_mode & 0o777 == 0o600, (st.st_mtime, oct(st.st_mode))
keep("last.ckpt", payload)
print("ok - shutil.move from another file system, with its mtime and mode")

p = os.path.join(m, "log.txt")
with open(p, "ab") as f:
    f.write(b"line 1\n")
with open(p, "ab") as f:
    f.write(b"line 2\n")
with open(p, "r+b") as f:
    f.seek(5)
    f.write(b"X")
    f.seek(0)
    assert f.read() == b"line X\nline 2\n"
    f.truncate(7)
keep("log.txt", b"line X\n")
print("ok - append, overwrite in place, read back through the handle, ftruncate")
