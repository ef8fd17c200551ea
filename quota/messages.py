"""The quota service's sentences for students (a lease's ``reason``), from the one catalogue.

The allocator (quota/fairshare/) imports nothing but the standard library, so its reasons are
English phrases; :func:`sentence` turns each phrase it can give into the catalogue's message
(any other phrase stays an English sentence). A lease's ``reason`` is such a message: stored as
its English text, answered as ``reason`` (English) and ``reason_message`` (its id and
parameters), which the spawner and the workspace extension show in the student's language.
"""

from __future__ import annotations

import re
from datetime import datetime

from gpu_commons_i18n import Message, _, _n

# The allocator's phrases (quota/fairshare/answers.py, policy.py, reclaim.py) as sentences.
_PHRASES = {
    "waiting for a free GPU share": _("Waiting for a free GPU share."),
    "your school is using all it may borrow; waiting for one of its sessions to end":
        _("Your school is using all it may borrow; waiting for one of its sessions to end."),
    "a school below its guaranteed share is waiting for this GPU share":
        _("A school below its guaranteed share is waiting for this GPU share."),
    "a school holding less than its fair share is waiting for this GPU share":
        _("A school holding less than its fair share is waiting for this GPU share."),
    "stopped to give the GPU share back to a school below its guarantee":
        _("Stopped to give the GPU share back to a school below its guaranteed share."),
    "its GPU share goes back to a school below its guarantee":
        _("Its GPU share goes back to a school below its guaranteed share."),
    "the class reservation ended": _("The class reservation ended."),
    "a class reservation starts now on this pool": _("A class reservation starts now on this pool."),
    "the GPU-hour budget is used up": _("The GPU-hour budget is used up."),
    "someone with a better claim is waiting": _("Someone with a better claim is waiting."),
    "the GPU was not used for a while and others are waiting for it":
        _("The GPU was not used for a while and others are waiting for it."),
    "released: the GPU was not used and others were waiting for it":
        _("Released: the GPU was not used and others were waiting for it. Your saved files are kept; start again "
          "when you need the GPU."),
    "the lease is not running": _("The lease is not running."),
    "a request must ask for a positive GPU share": _("A request must ask for a positive GPU share."),
}
_NOT_RENEWED = "the lease ended and was not renewed: "
_LENT_BACK = "the borrowed GPU share went back at the time given when it was lent: "

NO_SUCH_KIND = _("No GPU of this kind exists in the alliance; choose another profile.")
WITHDRAWN = _("This request was withdrawn by the hub before it arrived; nothing was booked.")


def sentence(phrase: str) -> Message | str:
    """The allocator's phrase as a sentence for a student, from the catalogue where it is one."""
    text = phrase.strip()
    if text in _PHRASES:
        return _PHRASES[text]
    if text.startswith(_NOT_RENEWED):
        return _("The lease ended and was not renewed: {reason}", reason=sentence(text[len(_NOT_RENEWED):]))
    if text.startswith(_LENT_BACK):
        return _("The borrowed GPU share went back at the time you were told when it was lent: {reason}",
                 reason=sentence(text[len(_LENT_BACK):]))
    for pattern, make in _WITH_NUMBERS:
        found = pattern.match(text)
        if found:
            return make(*found.groups())
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


# The allocator's phrases that carry numbers (quota/fairshare/answers.py), read back into the
# catalogue's sentences; tests/test_quota_messages.py makes the allocator say each of them.
_WITH_NUMBERS = [
    (re.compile(r"your school's GPU budget is used up \((\S+) of (\S+) GPU-hours in the last (\S+) days\); "
                r"try again later or ask your teacher$"),
     lambda used, budget, days: _("Your school's GPU budget is used up ({used} of {budget} GPU-hours in the last "
                                  "{days} days); try again later or ask your teacher.",
                                  used=used, budget=budget, days=days)),
    (re.compile(r"your GPU budget is used up \((\S+) of (\S+) GPU-hours in the last (\S+) days\); "
                r"try again later or ask your teacher$"),
     lambda used, budget, days: _("Your GPU budget is used up ({used} of {budget} GPU-hours in the last {days} "
                                  "days); try again later or ask your teacher.", used=used, budget=budget, days=days)),
    (re.compile(r"you already have (\d+) workspace\(s\) running or waiting, the most your school allows; "
                r"stop one and try again$"),
     lambda cap: _n("You already have {n} workspace running or waiting, the most your school allows; stop it "
                    "and try again.", "You already have {n} workspaces running or waiting, the most your school "
                    "allows; stop one and try again.", int(cap))),
    (re.compile(r"your school may hold at most (\S+) GPU at once and this asks for (\S+); ask for a smaller "
                r"share or ask staff to raise the school's share$"),
     lambda limit, asked: _("Your school may hold at most {limit} GPU at once and this asks for {asked}; ask for "
                            "a smaller share or ask staff to raise the school's share.", limit=limit, asked=asked)),
]


def ask_again_from(reason: Message | str, when: datetime) -> Message:
    day_and_time = when.strftime("%Y-%m-%d %H:%M")
    return _("{reason} You can ask again from {when} UTC.", reason=reason, when=day_and_time)


def not_renewed(reason: Message | str, ends: datetime) -> tuple[Message, Message]:
    """The answer to a refused renewal, and the lease's reason (for its warnings)."""
    values = {"reason": reason, "ends": ends.strftime("%H:%M")}
    return (_("It cannot be renewed now: {reason} Save your work: it ends at {ends} UTC.", **values),
            _("Your GPU lease cannot be renewed now: {reason} Save your work: it ends at {ends} UTC.", **values))


def lent_until(until: datetime) -> Message:
    """A lease beyond the school's guaranteed share, lent until ``until`` (quota.fairshare's lent leases)."""
    return _("This GPU share is lent to you from idle capacity until {until} UTC; it is renewed then if nobody with "
             "a better claim is waiting. Save your work before then.", until=f"{until:%H:%M}")


def goes_back(reason: Message | str, at: datetime) -> Message:
    clock = at.strftime("%H:%M")
    return _("Your GPU share goes back at {at} UTC: {reason} Save your work before then.", reason=reason, at=clock)


def as_data(reason) -> dict | None:
    """A lease's reason as the API's ``reason_message``: None when it is plain text (a lease
    read back from the database after a restart keeps only its English)."""
    return reason.as_json() if isinstance(reason, Message) else None
