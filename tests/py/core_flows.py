"""The containers issue's core flows through docker-py (PyPI `docker`), against a Berth engine.

Run by tests/tests/docker_py.rs with DOCKER_HOST pointing at the engine and BERTH_IMAGE naming
an image the engine can pull. Every check raises on failure; the last line says what passed.
"""
import io
import os
import tarfile
import time

import docker
from docker.errors import APIError, ImageNotFound, NotFound

image = os.environ["BERTH_IMAGE"]
client = docker.from_env(timeout=300)
passed = []


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    passed.append(name)


check("ping", client.ping() is True)
version = client.version()
check("version", version["ApiVersion"] >= "1.41", version)

# Pull with progress, as `docker pull` does.
events = list(client.api.pull(image, stream=True, decode=True))
check("pull progress", any("status" in e for e in events), events[-3:])
img = client.images.get(image)
check("image inspect", img.id.startswith("sha256:") and img.attrs["RootFS"]["Layers"], img.attrs)

# run --rm: output and exit code.
out = client.containers.run(image, ["sh", "-c", "echo out; echo err >&2"], remove=True,
                            stdout=True, stderr=True)
check("run output", b"out\n" in out and b"err\n" in out, out)
try:
    client.containers.run(image, ["sh", "-c", "exit 3"], remove=True)
    raise AssertionError("a failing command did not raise")
except docker.errors.ContainerError as e:
    check("run exit code", e.exit_status == 3, e)

# Detached: logs, exec, top, stats, archive, stop, wait, remove.
c = client.containers.run(image, ["sh", "-c", "echo started; exec sleep 300"], detach=True,
                          name="py-box", environment={"GREETING": "hi"}, working_dir="/tmp")
deadline = time.time() + 60
while b"started" not in c.logs() and time.time() < deadline:
    time.sleep(0.2)
check("logs", c.logs() == b"started\n", c.logs())
c.reload()
check("inspect running", c.status == "running" and c.attrs["State"]["Pid"] > 0, c.attrs["State"])
code, output = c.exec_run(["sh", "-c", "echo $GREETING in $(pwd); exit 4"])
check("exec", (code, output) == (4, b"hi in /tmp\n"), (code, output))
top = c.top()
check("top", any("sleep 300" in p[-1] for p in top["Processes"]), top)
stats = c.stats(stream=False)
check("stats", stats["memory_stats"].get("usage", 0) > 0 and "cpu_stats" in stats, stats)

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tar:
    data = b"put by docker-py\n"
    info = tarfile.TarInfo("py.txt")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
check("put_archive", c.put_archive("/tmp", buf.getvalue()) is True)
stream, stat = c.get_archive("/tmp/py.txt")
got = io.BytesIO(b"".join(stream))
with tarfile.open(fileobj=got) as tar:
    content = tar.extractfile("py.txt").read()
check("get_archive", content == b"put by docker-py\n" and stat["name"] == "py.txt", stat)

c.stop(timeout=2)
check("wait after stop", c.wait()["StatusCode"] in (137, 143), c.wait())
c.reload()
check("exited", c.status == "exited", c.status)
c.remove()
try:
    client.containers.get("py-box")
    raise AssertionError("removed container still found")
except NotFound:
    passed.append("removed")

# Errors: dockerd's codes reach the client as docker-py's exceptions.
try:
    client.images.get("no-such-image:nope")
    raise AssertionError("missing image found")
except ImageNotFound:
    passed.append("image 404")
keeper = client.containers.create(image, ["true"], name="py-keeper")
try:
    client.images.remove(image)
    raise AssertionError("removed an image a container uses")
except APIError as e:
    check("rmi conflict", e.status_code == 409, e)
keeper.remove()

print("passed:", " ".join(p.replace(" ", "-") for p in passed))
