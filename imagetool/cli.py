"""imagetool's command line: a thin layer over the store, archives, import and the registry
client. Every verb works on the store at `--root` (default /var/lib/imagetool). Registry
verbs import their modules only when called, so the local verbs stay quick and keep working
whatever the registry side needs. Errors are one line on stderr and a non-zero exit;
`--debug` shows the traceback instead."""

from __future__ import annotations

import os
import sys

from imagetool import __version__
from imagetool.failures import UsageError, report

# argparse, json and typing are imported where used: an ordinary user's command starts twice
# (the second time inside its user namespace), and the first start needs none of them
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

DEFAULT_ROOT = "/var/lib/imagetool"
PLANNED: dict[str, str] = {}


def _store(args: argparse.Namespace) -> Any:
    from imagetool.store import Store
    return Store(args.root)


def _names(store: Any, texts: list[str]) -> list[str]:
    """One store name per text; an image ID shared by several names is one image."""
    from imagetool import views
    return [views.resolve_one(store, t) for t in texts]


def _familiar(name: str) -> str:
    from imagetool import reference
    try:
        return reference.parse(name).familiar()
    except reference.ReferenceError:
        return name


# -- verbs -------------------------------------------------------------------------------------
def cmd_pull(args: argparse.Namespace) -> int:
    from imagetool.pull import pull
    digest = pull(_store(args), args.ref, platform=args.platform,
                  all_platforms=args.all_platforms, progress=False if args.quiet else None,
                  verify_diff_ids=args.verify_diff_ids,
                  signature_policy=args.signature_policy, registries_d=args.registries_d)
    if args.quiet:
        print(digest)
        return 0
    from imagetool import reference
    name = reference.normalize(args.ref)
    # docker's closing lines: the digest, what happened, then the image's full name
    print(f"Digest: {digest}\nStatus: Downloaded image for {_familiar(name)}\n{name}")
    return 0



def cmd_push(args: argparse.Namespace) -> int:
    from imagetool import reference
    from imagetool.push import push
    store = _store(args)
    local = _names(store, [args.name])[0]
    remote = reference.normalize(args.remote) if args.remote else None
    print(push(store, local, remote, progress=False if args.quiet else None))
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    from imagetool.registry.client import login
    username = args.username
    if not username:
        if not sys.stdin.isatty() or args.password_stdin:
            raise UsageError("login: give --username (no terminal to ask on)")
        username = input("Username: ").strip()
    if args.password is not None and args.password_stdin:
        raise UsageError("login: --password and --password-stdin exclude each other")
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
              file=sys.stderr)
        password = args.password
    elif sys.stdin.isatty():
        import getpass
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("login: give --password-stdin (no terminal to ask on)")
    if not username or not password:
        raise UsageError("login: username and password must not be empty")
    login(args.server, username, password)
    print("Login Succeeded")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from imagetool.registry.client import logout
    if logout(args.server):
        print(f"Removing login credentials for {args.server}")
    else:
        print(f"Not logged in to {args.server}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from imagetool import views
    from imagetool.run.formatting import print_rows
    rows = views.rows(_store(args), args.filter)
    if args.quiet:
        seen: dict[str, None] = {}
        for r in rows:
            seen.setdefault(views.short_id(r.image_id or r.digest, args.no_trunc))
        if seen:
            print("\n".join(seen))
    elif args.format:
        print_rows(args.format, [r.as_json(args.no_trunc) for r in rows], views.IMAGE_HEADERS)
    else:
        print(views.table(rows, args.digests, args.no_trunc))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from imagetool import views
    from imagetool.run.formatting import print_docs
    store = _store(args)
    print_docs([views.inspect(store, n) for n in _names(store, args.names)], args.format)
    return 0



def cmd_tag(args: argparse.Namespace) -> int:
    from imagetool import reference
    store = _store(args)
    source = _names(store, [args.source])[0]
    desc = store.get_image(source)
    store.set_image(reference.normalize(args.target), desc)
    if source == desc["digest"]:  # it was a <none> image: now it has a name
        store.remove_image(source)
    return 0



def cmd_rmi(args: argparse.Namespace) -> int:
    from imagetool import views
    store = _store(args)
    failed = 0
    for text in args.names:
        try:
            hits = views.resolve(store, text)
        except views.NotFound as e:
            print(f"imagetool: rmi: {e}", file=sys.stderr)
            failed += 1
            continue
        if len(hits) > 1 and not args.force:
            print(f"imagetool: rmi: {text} is {len(hits)} images ({', '.join(hits)}); "
                  "use -f to remove them all", file=sys.stderr)
            failed += 1
            continue
        from imagetool.run.records import image_users
        users = [] if args.force else image_users(store, hits)
        if users:
            user, iid = users[0]
            print(f'imagetool: rmi: conflict: unable to remove repository reference "{text}" '
                  f"(must force) - container {user[:12]} is using its referenced image "
                  f"{iid.split(':', 1)[-1][:12]}", file=sys.stderr)
            failed += 1
            continue
        for name in hits:

            store.remove_image(name)
            print(f"Untagged: {_familiar(name)}")
    for digest, _ in store.gc_report(wait=False):
        print(f"Deleted: {digest}")
    return 1 if failed else 0


def cmd_save(args: argparse.Namespace) -> int:
    from imagetool import archive
    store = _store(args)
    names = _names(store, args.names)
    if args.output and args.output != "-":
        archive.save_to(store, names, args.output, args.format)
        return 0
    if sys.stdout.isatty():
        raise UsageError("save: refusing to write an archive to a terminal; use -o FILE")
    sys.stdout.flush()
    archive.save(store, names, sys.stdout.buffer, args.format)
    sys.stdout.buffer.flush()
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from imagetool import archive
    store = _store(args)
    if args.input and args.input != "-":
        names = archive.load(store, args.input)
    else:
        if sys.stdin.isatty():
            raise UsageError("load: no archive on stdin; use -i FILE or redirect one")
        names = archive.load(store, sys.stdin.buffer, "stdin")
    if not args.quiet:
        for n in names:
            print(f"Loaded image: {_familiar(n)}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from imagetool import importer, reference
    name = reference.normalize(args.name)
    if args.source == "-" and sys.stdin.isatty():
        raise UsageError("import: no tarball on stdin")
    desc = importer.import_rootfs(
        _store(args), args.source, name,
        cmd=importer.parse_cmd(args.cmd, "--cmd") if args.cmd else None,
        entrypoint=importer.parse_cmd(args.entrypoint, "--entrypoint") if args.entrypoint
        else None,
        env=args.env, workdir=args.workdir, message=args.message)
    from imagetool import views
    print(views.image_id(_store(args), desc) or desc["digest"])  # the image ID, as docker
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from imagetool import bundle, importer
    store = _store(args)
    name = _names(store, [args.image])[0]
    entrypoint = None
    if args.entrypoint is not None:  # "" clears the image's entrypoint, as in docker run
        entrypoint = importer.parse_cmd(args.entrypoint, "--entrypoint") \
            if args.entrypoint.strip() else []
    meta = bundle.unpack(store, name, args.bundle, mode=args.mode, entrypoint=entrypoint,
                         cmd=importer.parse_cmd(args.cmd, "--cmd") if args.cmd else None,
                         env=args.env, user=args.user, workdir=args.workdir,
                         hostname=args.hostname, seccomp=not args.no_seccomp,
                         default_cmd=["sh"])   # umoci's default process
    if "defaultCmd" in meta:
        print(f"imagetool: unpack: {name} has no command (no Entrypoint or Cmd) and none was "
              f"given: the bundle runs {' '.join(meta['defaultCmd'])}", file=sys.stderr)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from imagetool.builder.executor import BuildOptions, build
    build_args: dict[str, str] = {}
    for item in args.build_arg or []:
        k, eq, v = item.partition("=")
        if not k:
            raise UsageError(f"--build-arg {item!r}: want KEY=VALUE")
        build_args[k] = v if eq else os.environ.get(k, "")
    from imagetool.builder.run_mounts import Secret, parse_secret
    secrets: dict[str, Secret] = {}
    for item in args.secret or []:
        try:
            s = parse_secret(item)
        except ValueError as e:
            raise UsageError(f"build: {e}") from None
        secrets[s.id] = s
    labels: dict[str, str] = {}
    for item in args.label or []:
        k, eq, v = item.partition("=")
        if not k:
            raise UsageError(f"--label {item!r}: want KEY=VALUE")
        labels[k] = v
    if args.iidfile and not os.path.isdir(os.path.dirname(os.path.abspath(args.iidfile))):
        raise UsageError(f"--iidfile {args.iidfile}: its directory does not exist")
    output = None
    if args.output:
        from imagetool.builder.executor import BuildError, parse_output
        try:
            output = parse_output(args.output)
        except BuildError as e:
            raise UsageError(f"build: {e}") from None
    dockerfile = args.file
    if dockerfile and not os.path.isabs(dockerfile) and not os.path.exists(dockerfile):
        dockerfile = os.path.join(args.context, dockerfile)
    opts = BuildOptions(
        context=args.context, dockerfile=dockerfile, tags=args.tag or [], target=args.target,
        build_args=build_args, no_cache=args.no_cache, output=output, platform=args.platform,
        network=args.network, labels=labels, pull=args.pull,
        format=args.format, compression=args.compression, secrets=secrets)
    from imagetool.builder.executor import BuildError, check_options
    try:
        check_options(opts)
    except BuildError as e:
        raise UsageError(f"build: {e}") from None
    if args.provenance:  # an SLSA provenance statement attached to the tags' image
        if not args.tag:
            raise UsageError("build: --provenance needs -t NAME (it is attached to the tag)")
        from imagetool.trust import provenance
        started = provenance.now()
    if not args.quiet:
        _announce_context(args.context)
    res = build(_store(args), opts, out=(lambda s: None) if args.quiet else _print_line)
    if not args.tag and not args.output:  # docker keeps it as a <none> image
        _store(args).keep_unnamed(res.manifest)
    if args.provenance:
        provenance.attach(_store(args), opts, res.manifest, started)
    if args.iidfile:   # docker's image ID: the config's digest
        from imagetool.atomicfile import atomic_file
        with atomic_file(args.iidfile, text=True) as f:
            f.write(res.config_digest)
    print(res.config_digest)  # docker's image ID, as `images` and --iidfile show it
    return 0


def _announce_context(context: str, threshold: int = 50_000_000) -> None:
    """A line on stderr before a large context is read (docker's "Sending build context");
    small contexts, the usual case, print nothing."""
    total = 0
    for dirpath, _dirs, files in os.walk(context):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                continue
    if total >= threshold:
        from imagetool.views import human_size
        print(f"Reading build context: {human_size(total)} (a .dockerignore can leave files "
              "out)", file=sys.stderr, flush=True)


def _print_line(line: str) -> None:
    print(line, flush=True)


def cmd_planned(args: argparse.Namespace) -> int:

    print(f"imagetool: {args.verb} is not implemented yet", file=sys.stderr)
    return 2


# -- parser ------------------------------------------------------------------------------------
def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """imagetool's parser; with `only`, every other verb's parser is left out (a command line
    runs one verb; building all ~60 costs ~15 ms). An `only` that is not a verb gets all."""
    import argparse

    from imagetool.parserkit import Unused, remember_translations
    remember_translations()
    p = argparse.ArgumentParser(prog="imagetool", description="Build, ship and run OCI images "
                                "(the image side of the toolchain; pyrunc is the runtime).")
    p.add_argument("--version", action="version", version=f"imagetool {__version__}")
    from imagetool.rootless.paths import default_store
    p.add_argument("--root", default=default_store(), help="the image store, an OCI image "
                   f"layout (default {DEFAULT_ROOT}; others: $XDG_DATA_HOME/imagetool)")
    p.add_argument("--debug", action="store_true",
                   help="show tracebacks on errors and debug logs (registry requests, build "
                   "cache decisions) on stderr")
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return Unused()  # type: ignore[return-value]
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    sp = verb("pull", cmd_pull, "pull an image from a registry into the store")
    sp.add_argument("ref", help="image reference, e.g. busybox or host:5000/app:1")
    sp.add_argument("--platform", help="os/arch[/variant] to pick from an index (default: host)")
    sp.add_argument("--all-platforms", action="store_true", help="pull every platform")
    sp.add_argument("--verify-diff-ids", action="store_true",
                    help="also decompress every layer now and check the config's diff_ids "
                    "(always checked at unpack; compressed digests are always checked)")
    sp.add_argument("--signature-policy", metavar="FILE", help="containers-policy.json(5) to "
                    "enforce (default $IMAGETOOL_SIGNATURE_POLICY, else "
                    "/etc/containers/policy.json when present)")
    sp.add_argument("--registries.d", dest="registries_d", metavar="DIR",
                    help="where GPG signatures' lookaside is configured "
                    "(default /etc/containers/registries.d)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    sp = verb("push", cmd_push, "push an image from the store to a registry")
    sp.add_argument("name", help="image in the store")
    sp.add_argument("remote", nargs="?", help="where to push (default: the image's own name)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    sp = verb("login", cmd_login, "log in to a registry (stored like docker's config.json)")
    sp.add_argument("server", nargs="?", default="docker.io", help="registry (default docker.io)")
    sp.add_argument("-u", "--username", help="user name (asked for on a terminal)")
    sp.add_argument("-p", "--password", help="password (insecure: prefer --password-stdin)")
    sp.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    sp = verb("logout", cmd_logout, "forget the credentials for a registry")
    sp.add_argument("server", nargs="?", default="docker.io", help="registry (default docker.io)")

    sp = verb("images", cmd_images, "list the images in the store")
    sp.add_argument("filter", nargs="*", help="only these repositories[:tag]")
    sp.add_argument("--format", metavar="FORMAT",
                    help="table, json (one object a line) or a Go template ({{.ID}}, "
                    "'table {{.Repository}}\\t{{.Size}}', {{json .}})")
    sp.add_argument("-q", "--quiet", action="store_true", help="only image IDs")
    sp.add_argument("-a", "--all", action="store_true",
                    help="also intermediate images (the store keeps none: same list)")
    sp.add_argument("--digests", action="store_true", help="show the manifest digests")
    sp.add_argument("--no-trunc", action="store_true", help="whole image IDs")

    sp = verb("inspect", cmd_inspect, "print images (or containers) as JSON, docker's shape")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("-f", "--format", metavar="TEMPLATE",
                    help="a Go template per object, e.g. '{{.Id}}' or '{{json .Config}}'")

    sp = verb("tag", cmd_tag, "give an image in the store another name")
    sp.add_argument("source")
    sp.add_argument("target")

    sp = verb("rmi", cmd_rmi, "remove image names; blobs no image uses any more go too")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("-f", "--force", action="store_true",
                    help="a digest that several names share removes them all")

    sp = verb("save", cmd_save, "write images to a tar archive")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("-o", "--output", help="archive file (default stdout)")
    sp.add_argument("--format", choices=("docker", "oci"), default="docker",
                    help="docker (default, as docker and podman save): `docker load` format; "
                    "oci: a tar of an OCI image layout")

    sp = verb("load", cmd_load, "load images from an OCI or docker-save archive")
    sp.add_argument("-i", "--input", help="archive file (default stdin); may be compressed")
    sp.add_argument("-q", "--quiet", action="store_true", help="print nothing")

    sp = verb("import", cmd_import, "make a one-layer image from a rootfs tarball")
    sp.add_argument("source", metavar="ROOTFS.tar", help="tarball (or - for stdin)")
    sp.add_argument("name", metavar="NAME", help="name for the image, e.g. busybox:latest")
    sp.add_argument("--cmd", help='default command: JSON array or shell string')
    sp.add_argument("--entrypoint", help="entrypoint: JSON array or shell string")
    sp.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="repeatable")
    sp.add_argument("--workdir", help="the image's working directory")

    sp.add_argument("-m", "--message", help="history comment")

    sp = verb("unpack", cmd_unpack, "unpack an image into a runtime bundle (rootfs + "
              "config.json), like umoci unpack")
    sp.add_argument("image", metavar="IMAGE", help="image in the store")
    sp.add_argument("bundle", metavar="BUNDLE", help="directory to make (absent or empty)")
    sp.add_argument("--mode", choices=("copy", "overlay"), default="copy",
                    help="copy (default): a standalone rootfs; overlay: an overlay mount over "
                    "cached layer snapshots (unmount BUNDLE/rootfs before deleting it)")
    sp.add_argument("--entrypoint", help='override: JSON array or shell string ("" clears it)')
    sp.add_argument("--cmd", help="override the command: JSON array or shell string (an "
                    "image without Entrypoint or Cmd gets sh, as with umoci)")
    sp.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="repeatable")
    sp.add_argument("-u", "--user", help="user[:group], names looked up in the rootfs")
    sp.add_argument("-w", "--workdir", help="working directory inside the container")
    sp.add_argument("--hostname", help="container hostname (default: from BUNDLE's name)")
    sp.add_argument("--no-seccomp", action="store_true",
                    help="leave out docker's default seccomp profile")

    sp = verb("build", cmd_build, "build an image from a Dockerfile into the store")
    sp.add_argument("context", metavar="CONTEXT", help="the build context directory")
    sp.add_argument("-t", "--tag", action="append", metavar="NAME", help="repeatable")
    sp.add_argument("-f", "--file", metavar="DOCKERFILE", help="default CONTEXT/Dockerfile")
    sp.add_argument("--target", help="build this stage (default: the last)")
    sp.add_argument("--build-arg", action="append", metavar="KEY=VALUE", help="repeatable")
    sp.add_argument("--secret", action="append", metavar="id=ID[,src=FILE|,env=VAR]",
                    help="a secret for RUN --mount=type=secret (repeatable)")
    sp.add_argument("--no-cache", action="store_true", help="do not reuse cached steps")
    sp.add_argument("--label", action="append", metavar="KEY=VALUE",
                    help="a label on the built image (repeatable)")
    sp.add_argument("--iidfile", metavar="FILE", help="write the image ID (config digest) here")
    # base images are pulled when missing (docker build's default); --pull is docker's
    # "always", --pull-never buildah's
    pull = sp.add_mutually_exclusive_group()
    pull.add_argument("--pull", dest="pull", action="store_const", const="always",
                      default="missing", help="pull base images even when present")
    pull.add_argument("--pull-never", dest="pull", action="store_const", const="never",
                      help="never pull: a missing base image is an error")
    sp.add_argument("--network", choices=("default", "host", "none"), default="default",
                    help="RUN's network when it sets none: default and host share the "
                         "host's, none has only loopback")
    sp.add_argument("-o", "--output", metavar="type=oci|docker,dest=FILE[,name=REF]",
                    help="also write the image as an archive (no -t needed)")
    sp.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                    help="target platform; only the host's (no emulation)")
    # buildah's (and podman's) name for this choice; buildx's oci-mediatypes=false belongs
    # to an exporter, and our --output type= already means the archive's layout
    sp.add_argument("--format", choices=("oci", "docker"), default="oci",
                    help="media types of the image: oci (default) or docker (schema 2)")
    sp.add_argument("--compression", choices=("gzip", "zstd"), default="gzip",
                    help="of new layers: gzip (default) or zstd (needs --format oci)")
    sp.add_argument("--provenance", action="store_true", help="attach an in-toto SLSA "
                    "provenance statement (the tag then names an index, as with BuildKit)")
    sp.add_argument("-q", "--quiet", action="store_true", help="only print the digest")

    from imagetool.verbs_prune import cmd_prune
    sp = verb("prune", cmd_prune, "delete blobs no image uses and stale partial downloads")
    sp.add_argument("-q", "--quiet", action="store_true", help="only the total")
    sp.add_argument("--build-cache", action="store_true",
                    help="also the builder's step cache and RUN cache mounts")

    from imagetool.run.cli import register as register_container_verbs
    register_container_verbs(verb, sub)  # run ps logs stop kill rm exec, inspect <container>
    from imagetool.trust.cli import register as register_trust_verbs
    register_trust_verbs(verb, sub)  # key sign verify artifact attest verify-attestation

    for name, text in PLANNED.items():
        verb(name, cmd_planned, f"{text} (not implemented yet)")
    if only is not None and only not in sub.choices:
        return build_parser()
    return p


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if argv is None and os.environ.get("IMAGETOOL_ROOTLESS_USERNS") == "1":
        from imagetool.rootless.entry import exit_now
        exit_now(code)  # the re-executed command inside its user namespace: no teardown
    return code


def _main(argv: list[str] | None = None) -> int:
    if os.geteuid() != 0 and argv is None:  # an ordinary user: into a user namespace first
        from imagetool.rootless.entry import maybe_enter
        maybe_enter(sys.argv[1:])
    from imagetool.run.usage import flat_verb, parse_args
    argv = sys.argv[1:] if argv is None else argv
    p = build_parser(flat_verb(argv))
    args = parse_args(p, argv)

    if args.verb is None:
        p.print_help()
        return 0
    if args.debug:
        from imagetool import debuglog
        debuglog.enable()
    try:
        return args.fn(args)
    except (Exception, KeyboardInterrupt) as e:  # one line; the traceback with --debug
        code = report(e, args.verb, args.debug)
        if code is None:
            raise
        return code
