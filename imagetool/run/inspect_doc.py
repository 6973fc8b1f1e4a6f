"""`inspect` of a container in docker's shape, made from our record: Name with its leading
"/", Image = the image ID, State's booleans, NetworkSettings.Ports a map keyed "80/tcp",
HostConfig.PortBindings likewise, the paths of the /etc files and the log; plus ours
(ImageName: the store name)."""

from __future__ import annotations

from typing import Any

from imagetool.run.records import Records, status


def _port_map(ports: list[dict[str, Any]], as_str: bool = True) -> dict[str, Any]:
    out: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        key = f"{p['ContainerPort']}/{p.get('Proto', 'tcp')}"
        out.setdefault(key, []).append({"HostIp": p.get("HostIp", ""),
                                        "HostPort": str(p.get("HostPort", ""))})
    return out


def container(recs: Records, rec: dict[str, Any]) -> dict[str, Any]:
    st = status(rec)
    s = dict(rec.get("State") or {})
    host = dict(rec.get("HostConfig") or {})
    net = dict(rec.get("NetworkSettings") or {})
    live = st in ("running", "paused")
    ports = net.get("Ports") or [] if live else []
    mode = host.get("NetworkMode", "bridge")
    cid = rec["Id"]
    state = {"Status": st, "Running": live, "Paused": st == "paused",
             "Restarting": st == "restarting", "OOMKilled": False, "Dead": st == "dead",
             "Pid": s.get("Pid", 0) if live else 0, "ExitCode": s.get("ExitCode", 0),
             "Error": s.get("Error", "") or "", "StartedAt": s.get("StartedAt") or
             "0001-01-01T00:00:00Z", "FinishedAt": s.get("FinishedAt") or
             "0001-01-01T00:00:00Z"}
    for k in ("MonitorPid", "MonitorStart", "ManualStop"):
        if k in s:
            state[k] = s[k]
    host["PortBindings"] = _port_map(host.get("PortBindings") or [])
    host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    networks = {}
    if net.get("IPAddress"):
        networks[mode] = {"IPAddress": net["IPAddress"], "IPPrefixLen": net.get("IPPrefixLen"),
                          "Gateway": net.get("Gateway", "")}
    return {
        "Id": cid, "Created": rec.get("Created", ""), "Path": rec.get("Path", ""),
        "Args": rec.get("Args", []), "State": state, "Image": rec.get("ImageID", ""),
        "ImageName": rec.get("Image", ""),
        "ResolvConfPath": recs.path(cid, "resolv.conf"),
        "HostnamePath": recs.path(cid, "hostname"), "HostsPath": recs.path(cid, "hosts"),
        "LogPath": rec.get("LogPath", ""), "Name": "/" + rec.get("Name", ""),
        "RestartCount": rec.get("RestartCount", 0), "Driver": "overlay",
        "Platform": "linux", "HostConfig": host, "Mounts": rec.get("Mounts", []),
        "Config": dict(rec.get("Config") or {}),
        "NetworkSettings": {"Bridge": net.get("Bridge", ""), "Ports": _port_map(ports),
                            "IPAddress": net.get("IPAddress", "") if live else "",
                            "IPPrefixLen": net.get("IPPrefixLen", 0) if live else 0,
                            "Gateway": net.get("Gateway", "") if live else "",
                            "Networks": networks if live else {}},
    }
