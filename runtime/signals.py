"""Signal names and numbers: the one table and parser behind pyrunc's `kill` and imagetool's
STOPSIGNAL, `stop -s` and `kill -s`.

Numbers are Linux's generic ones (x86, arm, arm64, riscv, ppc, s390x). Real-time signals are
counted as Go, runc and docker count them: RTMIN is 34 (libc keeps 32 and 33), RTMAX is 64.
Cheap to import (no `signal`, whose enum costs ~1.5 ms): pyrunc's `kill` loads it.
"""

RTMIN = 34
RTMAX = 64
NSIG = RTMAX + 1  # one past the highest signal number

# name without "SIG" -> number; aliases (IOT, CLD, POLL, UNUSED) as docker's table has them
SIGNALS: dict[str, int] = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20,
    "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27,
    "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31, "UNUSED": 31,
    "RTMIN": RTMIN, "RTMAX": RTMAX,
}


class InvalidSignal(ValueError):
    """Not a signal name or number; the message quotes what was given."""

    def __init__(self, text: str) -> None:
        super().__init__(f"invalid signal {text!r}")


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse(text: str, *, allow_zero: bool = False) -> int:
    """A signal's number from `text`: a number (1-64), a name with or without "SIG" in any
    case (`KILL`, `sigterm`), or a real-time one as `RTMIN`, `RTMIN+n`, `RTMAX-n` (with or
    without "SIG"). `0` (no signal: only "does it exist?") only with `allow_zero`, as
    runc's `kill` takes it. Anything else: InvalidSignal."""
    if _digits(text):
        num = int(text)
        if 0 < num < NSIG or (num == 0 and allow_zero):
            return num
        raise InvalidSignal(text)
    name = text.upper()
    if name.startswith("SIG"):
        name = name[3:]
    num = SIGNALS.get(name, 0)
    if num:
        return num
    for prefix, base, step in (("RTMIN+", RTMIN, 1), ("RTMAX-", RTMAX, -1)):
        offset = name[len(prefix):]
        if name.startswith(prefix) and _digits(offset):
            num = base + step * int(offset)
            if RTMIN <= num <= RTMAX:
                return num
    raise InvalidSignal(text)

