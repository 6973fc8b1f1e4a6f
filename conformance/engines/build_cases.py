"""The Dockerfile matrix of tests/imagetool/builder/test_build_matrix.py and
bench/build_matrix_bench.py: the shapes people write, on a busybox base.

The official images' Dockerfiles (nginx, redis, postgres, node, python, golang, httpd,
memcached, haproxy, traefik, mariadb, rabbitmq) rewritten without package downloads: their
users and groups, directories, ownership, modes, links, environment, volumes, ports, stop
signals and entrypoints; then every instruction and flag combination the peer's frontend
accepts, one concern per case. `ACCEPTED` lists each difference we keep on purpose, with
the reason; anything else that differs fails the test.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass, field

ENTRY = "#!/bin/sh\nset -e\nexec \"$@\"\n"
EP = {"docker-entrypoint.sh": ENTRY}


def _tar(members: list[tuple[str, bytes | None, int, int, int]], gz: bool = False) -> bytes:
    """A tar (gzipped if `gz`) of (name, data or None for a directory, mode, uid, gid)."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w:gz" if gz else "w") as tf:
        for name, data, mode, uid, gid in members:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, 1600000000
            if data is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return bio.getvalue()


def fill_context(ctx: str, dockerfile: str, files: dict[str, str | bytes] | None = None) -> None:
    """Write the Dockerfile and `files` (name -> text or bytes) into the context dir `ctx`."""
    for name, data in {"Dockerfile": dockerfile, **(files or {})}.items():
        path = os.path.join(ctx, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)


ARCHIVE = [("pkg", None, 0o750, 9, 0), ("pkg/readme", b"inside\n", 0o640, 5, 6),
           ("pkg/bin/tool", b"#!/bin/sh\n", 0o755, 123, 456), ("top.txt", b"top\n", 0o600, 0, 0)]


def user(name: str, uid: int, gid: int | None = None, home: str = "/nonexistent") -> str:
    """Shell that adds a user and its group the way adduser/groupadd would (busybox-static
    has neither applet): a passwd and a group line."""
    gid = uid if gid is None else gid
    return (f"echo '{name}:x:{uid}:{gid}:{name}:{home}:/bin/sh' >> /etc/passwd && "
            f"echo '{name}:x:{gid}:' >> /etc/group")


@dataclass
class Case:
    name: str
    dockerfile: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)  # context path -> chmod, after writing

    def write(self, ctx: str) -> None:
        """Give the context written from `files` its modes (directories' too)."""
        import os
        for rel, mode in sorted(self.modes.items(), key=lambda kv: -kv[0].count("/")):
            os.chmod(os.path.join(ctx, rel), mode)


def _c(name: str, body: str, files: dict[str, str | bytes] | None = None,
       **named: str | bytes) -> Case:
    """A one-stage case on busybox; files by dict, or by keyword (`dir__a_DOT_txt` names
    dir/a.txt)."""
    more = {k.replace("__", "/").replace("_DOT_", "."): v for k, v in named.items()}
    return Case(name, "FROM busybox:latest\n" + body.strip() + "\n", {**(files or {}), **more})


CASES: list[Case] = [
    # -- official images' shapes ---------------------------------------------------------------
    _c("nginx", """
ENV NGINX_VERSION=1.25.3 NJS_VERSION=0.8.2
RUN """ + user("nginx", 101, home="/var/cache/nginx") + """ \\
 && mkdir -p /var/cache/nginx /var/log/nginx /etc/nginx/conf.d /docker-entrypoint.d \\
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
COPY docker-entrypoint.sh /
COPY default.conf /etc/nginx/conf.d/
RUN chmod 0755 /docker-entrypoint.sh
ENTRYPOINT ["/docker-entrypoint.sh"]
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
""", files=EP, default_DOT_conf="server { listen 80; }\n"),
    _c("redis", """
RUN """ + user("redis", 999) + """
ENV REDIS_VERSION=7.2.4
RUN mkdir /data && chown redis:redis /data
VOLUME /data
WORKDIR /data
COPY docker-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
""", files=EP),
    _c("postgres", """
RUN set -eux; """ + user("postgres", 70, home="/var/lib/postgresql") + """; \\
    mkdir -p /var/lib/postgresql; chown -R postgres:postgres /var/lib/postgresql
ENV LANG=en_US.utf8 PG_MAJOR=16 PGDATA=/var/lib/postgresql/data
RUN mkdir -p "$PGDATA" && chown -R postgres:postgres "$PGDATA" && chmod 1777 "$PGDATA"
RUN mkdir /docker-entrypoint-initdb.d
VOLUME /var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/
RUN ln -s usr/local/bin/docker-entrypoint.sh /
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
""", files=EP),
    _c("node", """
ENV NODE_VERSION=20.11.0
RUN """ + user("node", 1001, home="/home/node") + """ && mkdir -p /home/node \\
 && chown node:node /home/node && mkdir -p /usr/local/bin \\
 && ln -s /bin/busybox /usr/local/bin/nodejs
COPY docker-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["docker-entrypoint.sh"]
USER node
WORKDIR /home/node/app
COPY --chown=node:node package.json ./
CMD ["node"]
""", files=EP, package_DOT_json='{"name": "app"}\n'),
    _c("python", """
ENV PATH=/usr/local/bin:$PATH LANG=C.UTF-8 PYTHON_VERSION=3.12.1
RUN set -eux; mkdir -p /usr/src/python /usr/local/lib/python3.12/site-packages \\
      /usr/local/bin; \\
    cd /usr/local/bin; ln -s /bin/busybox python3; ln -s python3 python; \\
    rm -rf /usr/src/python
CMD ["python3"]
"""),
    _c("golang", """
ENV GOLANG_VERSION=1.21.6 GOPATH=/go
ENV PATH=$GOPATH/bin:/usr/local/go/bin:$PATH
RUN mkdir -p "$GOPATH/src" "$GOPATH/bin" /usr/local/go/bin && chmod -R 1777 "$GOPATH"
WORKDIR $GOPATH
"""),
    _c("httpd", """
RUN """ + user("www-data", 82, home="/var/www") + """
ENV HTTPD_PREFIX=/usr/local/apache2
ENV PATH=$HTTPD_PREFIX/bin:$PATH
RUN mkdir -p "$HTTPD_PREFIX" && chown www-data:www-data "$HTTPD_PREFIX"
WORKDIR $HTTPD_PREFIX
COPY httpd-foreground /usr/local/bin/
RUN chmod +x /usr/local/bin/httpd-foreground
STOPSIGNAL SIGWINCH
EXPOSE 80
CMD ["httpd-foreground"]
""", files={"httpd-foreground": "#!/bin/sh\nexec httpd -f\n"}),
    _c("memcached", """
RUN """ + user("memcache", 11211, home="/home/memcache") + """
ENV MEMCACHED_VERSION=1.6.23
COPY docker-entrypoint.sh /usr/local/bin/
RUN ln -s usr/local/bin/docker-entrypoint.sh /entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
USER memcache
EXPOSE 11211
CMD ["memcached"]
""", files=EP),
    _c("haproxy", """
STOPSIGNAL SIGUSR1
RUN set -eux; """ + user("haproxy", 99, home="/var/lib/haproxy") + """; \\
    mkdir -p /var/lib/haproxy; chown haproxy:haproxy /var/lib/haproxy
RUN mkdir -p /usr/local/etc/haproxy
COPY docker-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["docker-entrypoint.sh"]
USER haproxy
WORKDIR /var/lib/haproxy
CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
""", files=EP),
    _c("traefik", """
COPY entrypoint.sh /
EXPOSE 80
ENTRYPOINT ["/entrypoint.sh"]
CMD ["traefik"]
LABEL org.opencontainers.image.vendor=Traefik \\
      org.opencontainers.image.url=https://traefik.io \\
      org.opencontainers.image.title=Traefik \\
      org.opencontainers.image.version="v2.10.7"
""", entrypoint_DOT_sh=ENTRY),
    _c("mariadb", """
RUN """ + user("mysql", 999, home="/var/lib/mysql") + """
ENV GOSU_VERSION=1.17 MARIADB_VERSION=1:11.2.2
RUN set -ex; rm -rf /var/lib/mysql; mkdir -p /var/lib/mysql /var/run/mysqld; \\
    chown -R mysql:mysql /var/lib/mysql /var/run/mysqld; chmod 777 /var/run/mysqld; \\
    mkdir /docker-entrypoint-initdb.d
VOLUME /var/lib/mysql
COPY docker-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 3306
CMD ["mariadbd"]
""", files=EP),
    _c("rabbitmq", """
ENV RABBITMQ_DATA_DIR=/var/lib/rabbitmq
RUN set -eux; """ + user("rabbitmq", 100, 101, "/var/lib/rabbitmq") + """; \\
    mkdir -p "$RABBITMQ_DATA_DIR" /etc/rabbitmq /tmp/rabbitmq-ssl /var/log/rabbitmq; \\
    chown -fR rabbitmq:rabbitmq "$RABBITMQ_DATA_DIR" /etc/rabbitmq /tmp/rabbitmq-ssl \\
    /var/log/rabbitmq; chmod 777 "$RABBITMQ_DATA_DIR" /etc/rabbitmq \\
    /tmp/rabbitmq-ssl /var/log/rabbitmq; ln -sf "$RABBITMQ_DATA_DIR/.erlang.cookie" /root/
ENV HOME=$RABBITMQ_DATA_DIR
VOLUME $RABBITMQ_DATA_DIR
EXPOSE 4369 5671 5672 25672
CMD ["rabbitmq-server"]
"""),
    Case("go-multistage", """FROM busybox:latest AS build
WORKDIR /src
COPY . .
RUN mkdir -p /out && cp main.go /out/app && chmod 0755 /out/app && chown 1000:1000 /out/app
FROM busybox:latest
COPY --from=build /out/app /usr/local/bin/app
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/app"]
""", {"main.go": "package main\nfunc main() {}\n"}),
    # -- COPY and ADD ------------------------------------------------------------------------------
    _c("copy-chown-names", "COPY --chown=user:user f /a/\nCOPY --chown=nobody:nogroup f /b",
       f="x\n"),
    _c("copy-chown-ids", "COPY --chown=1234:5678 f d/\nCOPY --chown=4321 f /c", f="x\n"),
    _c("copy-chown-user-only-name", """
RUN """ + user("worker", 301, 300) + """
COPY --chown=worker f /w
COPY --chown=worker:user f /wu
""", f="x\n"),
    _c("copy-dir-contents", "COPY dir/ /dst/\nCOPY dir /dst2",
       dir__a="a\n", dir__sub__b="b\n", dir__sub__deeper__c="c\n"),
    Case("copy-dir-modes", "FROM busybox:latest\nCOPY tree/ /dst/\nCOPY tree /dst2\n"
         "COPY --chmod=0751 tree /dst3\n",
         {"tree/private/key": "k\n", "tree/shared/readme": "r\n", "tree/run.sh": "#!/bin/sh\n"},
         {"tree": 0o750, "tree/private": 0o700, "tree/shared": 0o2775, "tree/run.sh": 0o755,
          "tree/private/key": 0o600}),
    _c("copy-wildcards", "COPY *.txt /txt/\nCOPY d?r/*.conf /conf/",
       one_DOT_txt="1\n", two_DOT_txt="2\n", skip_DOT_md="no\n", dir__x_DOT_conf="x\n"),
    _c("copy-onto-existing", "COPY f /etc\nCOPY f /tmp/renamed\nCOPY f g /multi/",
       f="f\n", g="g\n"),
    Case("copy-from-stage-owners", """FROM busybox:latest AS b
RUN mkdir -p /src/sub && echo hi > /src/sub/f && chown -R 7:8 /src && ln -s f /src/sub/l \\
 && chmod 0640 /src/sub/f && chmod 0700 /src/sub
FROM busybox:latest
COPY --from=b /src /dst
COPY --from=b /src/sub/f /single
COPY --from=b /src/sub /dir/
"""),
    Case("copy-from-stage-chown", """FROM busybox:latest AS b
RUN mkdir -p /src/sub && echo hi > /src/sub/f && chown -R 7:8 /src
FROM busybox:latest
COPY --from=b --chown=9:10 /src /dst
"""),
    Case("copy-from-stage-symlink", """FROM busybox:latest AS b
RUN mkdir /src && echo t > /src/target && ln -s target /src/link && ln -s /nowhere /src/dead
FROM busybox:latest
COPY --from=b /src/link /via-link
COPY --from=b /src /tree
"""),
    _c("add-tar", "ADD a.tar /opt/\nADD a.tar /opt2", a_DOT_tar=_tar(ARCHIVE)),
    _c("add-tar-gz-chown", "ADD --chown=42:43 a.tar.gz /adir/new/",
       a_DOT_tar_DOT_gz=_tar(ARCHIVE, gz=True)),
    _c("add-file-chown", "ADD --chown=5:5 f /f\nADD f /plain", f="x\n"),
    # -- WORKDIR and USER --------------------------------------------------------------------------
    _c("workdir-after-user-ids", "USER 1000:1000\nWORKDIR /w1/w2\nUSER root\nWORKDIR /r1"),
    _c("workdir-after-user-name", "USER user\nWORKDIR /home/user/app/x"),
    _c("workdir-after-user-named-group", "USER 1000:tty\nWORKDIR /grp/dir"),
    _c("workdir-existing", "USER 1000\nWORKDIR /tmp\nWORKDIR /etc"),
    _c("workdir-relative-chain", "WORKDIR /a\nWORKDIR b\nWORKDIR c\nRUN pwd > /pwd"),
    _c("user-run-files", "USER 1000\nRUN touch /tmp/mine && mkdir /tmp/d\nUSER nobody"),
    # -- ARG and ENV -------------------------------------------------------------------------------
    Case("arg-env-stages", """ARG V=1
ARG UNUSED=x
FROM busybox:latest AS a
ARG V
RUN echo "v=$V" > /v
FROM busybox:latest
ARG V=2
ENV X=${V:-unset} Y=${NOPE:-dflt}
COPY --from=a /v /v
RUN echo "$X $Y" > /xy
"""),
    _c("env-expansion", """
ENV A=1 B=${A}2 C="$A $B"
ENV D=$C
LABEL l="$C" m=${D}
WORKDIR /w$A
RUN echo "$A/$B/$C/$D" > /env
"""),
    _c("arg-in-run-not-in-config", "ARG TOKEN=abc\nRUN echo \"$TOKEN\" > /t\nENV K=v"),
    # -- config instructions -----------------------------------------------------------------------
    _c("onbuild", "ONBUILD RUN echo hi > /onbuild\nONBUILD COPY . /app"),
    _c("shell", 'SHELL ["/bin/sh", "-xc"]\nRUN echo hi > /x\nCMD echo shell form'),
    _c("healthcheck", "HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --retries=2 "
       "CMD wget -q -O- localhost || exit 1"),
    _c("healthcheck-none", "HEALTHCHECK NONE"),
    _c("volume-expose-labels", """
VOLUME ["/v1", "/v2"]
VOLUME /v3 /v4
EXPOSE 80/tcp 53/udp 8080
LABEL a=b "c d"=e multi="x y"
"""),
    _c("entrypoint-shell-form", "ENTRYPOINT exec top -b\nCMD [\"-n\", \"1\"]"),
    _c("stopsignal-forms", "STOPSIGNAL 9\nSTOPSIGNAL SIGRTMIN+3"),
    # -- what RUN leaves in a layer ----------------------------------------------------------------
    _c("whiteouts", "RUN rm -rf /home/user /etc/group && rm /bin/vi"),
    _c("opaque-dir", "RUN rm -rf /home && mkdir /home && echo x > /home/only"),
    _c("hardlinks", "RUN echo a > /a && ln /a /b && mkdir /d && ln /a /d/c"),
    _c("fifo", "RUN mkfifo /fifo && chmod 600 /fifo"),
    _c("symlinks", "RUN mkdir /usr && ln -s /nonexistent /dangling && ln -s ../bin /usr/bin2 "
       "&& ln -s . /self"),
    _c("special-modes", """
RUN echo s > /s && chmod 6755 /s && mkdir -m 1777 /shared && mkdir -m 2750 /grp \\
 && chown 1000:1000 /grp && touch /noperm && chmod 000 /noperm
"""),
    _c("replace-file-with-dir", "RUN rm /etc/passwd && mkdir /etc/passwd && touch /etc/passwd/x"),
]

# Differences kept on purpose: case name -> {path or config key: why}.
ACCEPTED: dict[str, dict[str, str]] = {
    "copy-dir-modes": {
        "dst3/shared": "--chmod with an octal mode: current BuildKit (fsutil's copier takes the "
                       "setuid/setgid/sticky bits from the mode given) makes it exactly 0751; "
                       "docker 20.10's embedded BuildKit replaced only the 0777 bits and kept "
                       "the source directory's setgid (02751)",
    },
    "add-tar-gz-chown": {
        "adir/new/pkg": "--chown on archive entries: current BuildKit (v0.23.0 and later, "
                        "moby/buildkit#5987) owns every unpacked entry by --chown; docker "
                        "20.10's embedded BuildKit predates it and keeps the tar's owners",
        "adir/new/pkg/readme": "as adir/new/pkg",
        "adir/new/pkg/bin/tool": "as adir/new/pkg",
        "adir/new/top.txt": "as adir/new/pkg (0:0 in the tar, 42:43 with --chown)",
    },
}
