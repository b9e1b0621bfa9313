"""Calls third-party clients make the way docker-py's own integration tests make them, each
checked against what dockerd answers (recorded from dockerd 20.10 and 27 where they differ).

Run by tests/tests/api_compat.rs with DOCKER_HOST pointing at the engine and BERTH_IMAGE naming
a local busybox image. Every check raises on failure; the last line says what passed.
"""
import io
import os
import socket
import tempfile
import threading
import time

import docker
from docker.errors import APIError, ImageLoadError

image = os.environ["BERTH_IMAGE"]
client = docker.from_env(timeout=300)
api = client.api
passed = []
cleanup = []


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail!r}")
    passed.append(name)


def container(cmd, **kw):
    c = api.create_container(image, cmd, **kw)
    cleanup.append(c["Id"])
    return c["Id"]


def started(cmd, **kw):
    cid = container(cmd, **kw)
    api.start(cid)
    return cid


def build(script, **kw):
    return list(api.build(fileobj=io.BytesIO(script.encode()), decode=True, **kw))


try:
    # An exec made with a TTY but started with `Tty: false` (docker-py's default) comes in
    # stdout frames, whole; with `Tty: true` raw.
    box = started("cat", stdin_open=True)
    cmd = 'sh -c "echo hello out; sleep 0.5; echo hello err >&2"'
    out = api.exec_start(api.exec_create(box, cmd, tty=True))
    check("tty exec framed", out == b"hello out\r\nhello err\r\n", out)
    out = api.exec_start(api.exec_create(box, cmd, tty=True), tty=True)
    check("tty exec raw", out == b"hello out\r\nhello err\r\n", out)
    sock = api.exec_start(api.exec_create(box, ["printf", "yay"], tty=True), socket=True)
    raw = sock._sock
    raw.settimeout(60)
    head = b""
    while len(head) < 8:
        head += raw.recv(8 - len(head))
    check("exec socket frame", head[0] == 1 and int.from_bytes(head[4:], "big") == 3, head)
    sock.close()

    # The detach keys (the default, or the exec's own, which docker-py sends as `detachKeys`)
    # end a TTY exec's session; the process runs on.
    for name, keys, typed in (("exec detach keys", None, [b"\x10", b"\x11"]),
                              ("exec own detach keys", "ctrl-x", [b"\x18"])):
        ex = api.exec_create(box, "cat", stdin=True, tty=True, detach_keys=keys)
        sock = api.exec_start(ex, tty=True, socket=True)
        raw = sock._sock
        raw.settimeout(30)
        for key in typed:
            raw.sendall(key)
            time.sleep(0.3)
        closed = False
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if raw.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                break
        check(name, closed and api.exec_inspect(ex)["Running"], api.exec_inspect(ex))
        sock.close()

    # attach(logs=True) of an exited container is its log, at once.
    done = started("echo hello")
    api.wait(done)
    check("attach logs of exited", api.attach(done, stream=False, logs=True) == b"hello\n")
    # A TTY's line comes as one piece.
    tty = started('sh -c "sleep 2 && echo hello && sleep 60"', tty=True)
    out = api.attach(tty, stream=True, logs=True)
    threading.Timer(4, out.close).start()
    pieces = list(out)
    check("attach tty line whole", pieces == [b"hello\r\n"], pieces)

    # Legacy links: variables, names, removal.
    child = started("cat", stdin_open=True, environment={"FOO": "1"}, ports=[80])
    child_name = api.inspect_container(child)["Name"][1:]
    parent = started("sh -c 'env; cat /etc/hosts'",
                     host_config=api.create_host_config(links={child_name: "mylink"}))
    api.wait(parent)
    logs = api.logs(parent).decode()
    parent_name = api.inspect_container(parent)["Name"][1:]
    for want in (f"MYLINK_NAME=/{parent_name}/mylink", "MYLINK_ENV_FOO=1", "MYLINK_PORT_80_TCP_PORT=80"):
        check(f"link env {want}", want in logs, logs)
    check("link hosts", "\tmylink" in logs, logs)
    inspected = api.inspect_container(parent)["HostConfig"]["Links"]
    check("link stored", inspected == [f"/{child_name}:/{parent_name}/mylink"], inspected)
    names = [n for c in api.containers(all=True) for n in c["Names"]]
    check("link name listed", f"/{parent_name}/mylink" in names, names)
    api.remove_container(f"{parent_name}/mylink", link=True)
    names = [n for c in api.containers(all=True) for n in c["Names"]]
    check("link removed", f"/{parent_name}/mylink" not in names, names)
    check("link gone from inspect", not api.inspect_container(parent)["HostConfig"].get("Links"))
    api.stop(child, timeout=0)
    late = container("true", host_config=api.create_host_config(links={child_name: "x"}))
    try:
        api.start(late)
        raise AssertionError("a link to a stopped container started")
    except APIError as e:
        check("link to stopped refused", "Cannot link to a non running container" in str(e), e)
    try:
        container("true", host_config=api.create_host_config(links={"nosuch": "x"}))
        raise AssertionError("a link to no container was created")
    except APIError as e:
        check("link to none refused", "could not get container for nosuch" in str(e), e)

    # Links on a user network are DNS names for the linking container alone.
    net = api.create_network("pylinks")["Id"]
    try:
        linker = started("cat", stdin_open=True,
                         host_config=api.create_host_config(network_mode="pylinks"),
                         networking_config=api.create_networking_config(
                             {"pylinks": api.create_endpoint_config(links=[("pyupstream", "bar")])}))
        links = api.inspect_container(linker)["NetworkSettings"]["Networks"]["pylinks"]["Links"]
        check("network link stored", links == ["pyupstream:bar"], links)
        started("cat", stdin_open=True, name="pyupstream",
                host_config=api.create_host_config(network_mode="pylinks"))
        ex = api.exec_create(linker, ["nslookup", "bar"])
        out = api.exec_start(ex)
        check("network link resolves", api.exec_inspect(ex)["ExitCode"] == 0, out)
        other = started("cat", stdin_open=True,
                        host_config=api.create_host_config(network_mode="pylinks"))
        ex = api.exec_create(other, ["nslookup", "bar"])
        api.exec_start(ex)
        check("network link is the linker's", api.exec_inspect(ex)["ExitCode"] != 0)
        # A MAC address given at connect shows before the container runs.
        idle = container("cat", stdin_open=True)
        api.connect_container_to_network(idle, "pylinks", mac_address="02:42:ac:11:00:02")
        mac = api.inspect_container(idle)["NetworkSettings"]["Networks"]["pylinks"]["MacAddress"]
        check("connect mac shown", mac == "02:42:ac:11:00:02", mac)
    finally:
        for cid in list(cleanup):
            try:
                api.remove_container(cid, force=True)
                cleanup.remove(cid)
            except APIError:
                pass
        api.remove_network(net)

    # IPv6: a network with its own subnet and one without (a unique local /64); a container
    # gets the address it asks for, or one of the network's.
    from docker.types import IPAMConfig, IPAMPool
    api.create_network("py-v6", enable_ipv6=True,
                       ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="2001:389::/64")]))
    api.create_network("py-v6-auto", enable_ipv6=True)
    try:
        check("ipv6 network", api.inspect_network("py-v6")["EnableIPv6"] is True)
        pools = [c["Subnet"] for c in api.inspect_network("py-v6-auto")["IPAM"]["Config"]]
        check("ipv6 pool made", any(p.startswith("fd") and p.endswith("/64") for p in pools), pools)
        v6 = started("sleep 60", host_config=api.create_host_config(network_mode="py-v6"),
                     networking_config=api.create_networking_config(
                         {"py-v6": api.create_endpoint_config(ipv6_address="2001:389::f00d")}))
        net = api.inspect_container(v6)["NetworkSettings"]["Networks"]["py-v6"]
        check("ipv6 address", net["GlobalIPv6Address"] == "2001:389::f00d"
              and net["IPAMConfig"]["IPv6Address"] == "2001:389::f00d", net)
        ex = api.exec_create(v6, ["ip", "-6", "addr"])
        out = api.exec_start(ex)
        check("ipv6 inside", b"2001:389::f00d/64" in out, out)
        api.remove_container(v6, force=True)
        cleanup.remove(v6)
    finally:
        api.remove_network("py-v6")
        api.remove_network("py-v6-auto")

    # IPRange and AuxiliaryAddresses: shown as given; addresses come from the range and skip
    # the auxiliary ones.
    api.create_network("py-range", ipam=IPAMConfig(pool_configs=[IPAMPool(
        subnet="172.28.0.0/16", iprange="172.28.5.0/24", gateway="172.28.5.254",
        aux_addresses={"a": "172.28.5.1"})]))
    try:
        cfg = api.inspect_network("py-range")["IPAM"]["Config"]
        check("ipam range shown", cfg == [{"Subnet": "172.28.0.0/16", "IPRange": "172.28.5.0/24",
                                           "Gateway": "172.28.5.254",
                                           "AuxiliaryAddresses": {"a": "172.28.5.1"}}], cfg)
        ranged = started("sleep 60", host_config=api.create_host_config(network_mode="py-range"))
        ip = api.inspect_container(ranged)["NetworkSettings"]["Networks"]["py-range"]["IPAddress"]
        # dockerd 20.10 gives the range's first address too: it is a host of the /16.
        check("ipam range used", ip == "172.28.5.0", ip)
        second = started("sleep 60", host_config=api.create_host_config(network_mode="py-range"))
        ip = api.inspect_container(second)["NetworkSettings"]["Networks"]["py-range"]["IPAddress"]
        check("ipam aux skipped", ip == "172.28.5.2", ip)
        for cid in (ranged, second):
            api.remove_container(cid, force=True)
            cleanup.remove(cid)
    finally:
        api.remove_network("py-range")

    # Every field dockerd writes is there, also when empty; image documents as the client's
    # API version has them (ContainerConfig only before 1.45).
    plain = container("true")
    hc = api.inspect_container(plain)["HostConfig"]
    check("inspect empty fields", hc["Privileged"] is False and hc["CapAdd"] is None
          and "Ulimits" in hc and "Domainname" in api.inspect_container(plain)["Config"], hc)
    old = docker.from_env(version="1.41").api
    check("image fields by version", "ContainerConfig" in old.inspect_image(image)
          and "ContainerConfig" not in api.inspect_image(image))

    # `runtime=` where docker-py puts it (the body's top level).
    rt = container(["true"], runtime="runc")
    check("runtime kept", api.inspect_container(rt)["HostConfig"]["Runtime"] == "runc")

    # A bad archive to `load` is an error in the stream, as dockerd answers it.
    try:
        client.images.load(b"abc")
        raise AssertionError("a bad archive loaded")
    except ImageLoadError as e:
        check("load error", str(e), e)

    # commit pauses only a running container; the image can go again.
    quick = started(["touch", "/test"])
    api.wait(quick)
    img = api.commit(quick)["Id"]
    check("commit of exited", img.startswith("sha256:"), img)
    parent = api.inspect_image(img)["Parent"]
    check("commit parent", parent == api.inspect_image(image)["Id"], parent)
    deleted = api.remove_image(img, force=True)
    check("rmi of committed", {"Deleted": img} in deleted, deleted)

    # put_archive into a volume of a container that never ran.
    with tempfile.NamedTemporaryFile() as f:
        import tarfile
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            data = b"Deaf To All But The Song"
            info = tarfile.TarInfo("song.txt")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        vol = container("cat /vol1/song.txt", volumes=["/vol1"])
        api.put_archive(vol, "/vol1", buf.getvalue())
        api.start(vol)
        api.wait(vol)
        check("put_archive into a volume", api.logs(vol).strip() == data, api.logs(vol))

    # A volume's subpath (API 1.45), read-only; one leaving the volume is refused.
    api.create_volume(name="py-subpath")
    setup = started(["sh", "-c", "mkdir -p /vol/subdir && echo 'test content' > /vol/subdir/t.txt"],
                    host_config=api.create_host_config(binds=["py-subpath:/vol"]))
    api.wait(setup)
    # docker-py 7.1's Mount has no `subpath` yet; the body as newer ones send it.
    mount = {"Type": "volume", "Source": "py-subpath", "Target": "/mnt/sub", "ReadOnly": True,
             "VolumeOptions": {"Subpath": "subdir"}}
    sub = started(["sh", "-c", "cat /mnt/sub/t.txt; touch /mnt/sub/x 2>/dev/null || echo read-only"],
                  host_config=api.create_host_config(mounts=[mount]))
    api.wait(sub)
    check("volume subpath", api.logs(sub).split() == [b"test", b"content", b"read-only"], api.logs(sub))
    try:
        outside = {"Type": "volume", "Source": "py-subpath", "Target": "/m",
                   "VolumeOptions": {"Subpath": "../x"}}
        container("true", host_config=api.create_host_config(mounts=[outside]))
        raise AssertionError("a subpath outside its volume was taken")
    except APIError as e:
        check("subpath outside refused", e.status_code == 400, e)
    for cid in (setup, sub):
        api.remove_container(cid, force=True)
        cleanup.remove(cid)
    api.remove_volume("py-subpath")

    # Builds: network mode, extra hosts, cache_from, target, errors with their exit code,
    # stderr in red, a Dockerfile outside the context, .dockerignore as dockerd reads it.
    lines = build(f"FROM {image}\nRUN exit 7\n", nocache=True, tag="py-fail")
    check("build error code", lines[-1].get("errorDetail", {}).get("code") == 7, lines[-1])
    build(f"FROM {image}\nRUN ls /sys/class/net > /nets\n", network_mode="none", tag="py-none")
    out = client.containers.run("py-none", "cat /nets", remove=True)
    check("build network none", out == b"lo\n", out)
    lines = build(f"FROM {image}\nRUN cp /etc/hosts /hosts-file\n", tag="py-hosts",
                  extra_hosts={"extrahost.local.test": "127.0.0.1"})
    check("build ok", "errorDetail" not in lines[-1], lines[-1])
    out = client.containers.run("py-hosts", "cat /hosts-file", remove=True)
    check("build extra hosts", b"127.0.0.1\textrahost.local.test" in out, out)
    script = f"FROM {image}\nENV FOO=bar\nRUN touch baz\nRUN touch bax\n"
    build(script, tag="py-cache1")
    hits = sum("Using cache" in l.get("stream", "") for l in build(script, tag="py-cache2", cache_from=["py-cache1"]))
    check("cache_from used", hits == 3, hits)
    hits = sum("Using cache" in l.get("stream", "") for l in build(script, tag="py-cache3", cache_from=["nosuchtag"]))
    check("cache_from only", hits == 0, hits)
    build(f"FROM {image} as first\nRUN mkdir -p /tmp/test\nFROM {image}\nRUN touch /second\n",
          target="first", tag="py-target")
    check("target tagged", api.inspect_image("py-target")["Id"])
    lines = build(f"FROM {image}\nRUN sh -c \">&2 echo Ancient Temple\"\n", nocache=True)
    check("build stderr red", "\x1b[91mAncient Temple\n\x1b[0m" in [l.get("stream") for l in lines], lines)
    with tempfile.TemporaryDirectory() as ctx, tempfile.TemporaryDirectory() as df_dir:
        with open(os.path.join(ctx, "file.txt"), "w") as f:
            f.write("hello world")
        with open(os.path.join(ctx, ".dockerignore"), "w") as f:
            f.write(".dockerignore\n")
        df = os.path.join(df_dir, "Dockerfile")
        with open(df, "w") as f:
            f.write(f"FROM {image}\nCOPY . /src\nWORKDIR /src\n")
        lines = list(api.build(path=ctx, dockerfile=df, tag="py-outside", decode=True))
        check("dockerfile outside context", "Successfully tagged" in lines[-1].get("stream", ""), lines[-1])
        out = client.containers.run("py-outside", "ls -a", remove=True).split()
        check("outside context files", sorted(out) == [b".", b"..", b"file.txt"], out)
    for tag in ("py-none", "py-hosts", "py-cache1", "py-cache2", "py-cache3", "py-target", "py-outside"):
        api.remove_image(tag, force=True)
finally:
    for cid in cleanup:
        try:
            api.remove_container(cid, force=True)
        except APIError:
            pass

print("passed:", " ".join(p.replace(" ", "-") for p in passed))
