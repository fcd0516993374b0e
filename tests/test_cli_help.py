"""What ``--help`` says, held to what the parsers do: every stated default is the real one, no
two flags set one thing, ``encode`` lists the user's options first, and mu's command lines from
the seed guide still parse to the values the guide means."""

from __future__ import annotations

import argparse
import os
import re

import pytest

from excamera.cli import build_parser
from excamera.mu.jobopts import backend_spec, job_settings


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.option_strings and a.help is not argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)]


def rendered(p: argparse.ArgumentParser, a: argparse.Action) -> str:
    return " ".join(p._get_formatter()._expand_help(a).split())


ENV_DEFAULT = re.compile(r"\(env ([A-Z_]+)")


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_stated_default_is_the_parsers_default(command: str) -> None:
    """An option whose default is a value states it through ``%(default)s``, so the text is
    computed from the parser and cannot go stale; one read from the environment names its
    variable. An option without a default states no number as one."""
    p = subcommands()[command]
    for a in options(p):
        text = rendered(p, a)
        flag = "/".join(a.option_strings)
        if a.default is None or a.default is False or a.default == "":
            assert not re.search(r"\((default: )?-?\d[\d.,]*\)", text), (flag, text)
            continue
        env = ENV_DEFAULT.search(a.help or "")
        if env:
            assert a.default == os.environ.get(env.group(1)), (flag, a.default)
            continue
        assert "%(default)" in (a.help or ""), f"{command} {flag}: default {a.default!r} " \
            f"not stated from the parser: {text!r}"


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_no_two_flags_set_one_setting(command: str) -> None:
    dests = [a.dest for a in subcommands()[command]._actions if a.option_strings]
    assert len(dests) == len(set(dests)), sorted(d for d in dests if dests.count(d) > 1)


def test_encode_help_puts_the_users_options_first() -> None:
    p = subcommands()["encode"]
    text = p.format_help()
    first = text.index("options:")
    order = [text.index(s, first) for s in ("-o OUTPUT", "--quality", "--target-bitrate",
                                            "--workers", "--backend",
                                            "--bucket", "encoder (", "--chunk",
                                            "mu job options:", "-O oFile", "lambda backend:")]
    assert order == sorted(order)
    # mu's letters for what the user's names already say are not offered twice.
    for gone in ("-Y", "-n", "-S", "-w", "-p", "-K"):
        assert gone not in {s for a in p._actions for s in a.option_strings}, gone
    usage = p.format_usage()
    assert usage.startswith("usage: excamera encode INPUT -o OUTPUT [--quality Q | "
                            "--target-bitrate KBPS]")


def test_the_guides_xcenc_command_line_keeps_its_meaning() -> None:
    """The seed guide's ``xcenc -n 25 -p 5 -H host -T 13337 -l fn -b bucket -v vid -c -s -k``."""
    args = build_parser().parse_args(
        ["xcenc", "-n", "25", "-p", "5", "-H", "relay.example", "-T", "13337", "-l",
         "xc-enc_0123", "-b", "s3://bucket", "-v", "video", "-c", "ca.pem", "-s", "srv.pem",
         "-k", "key.pem"])
    assert (args.n_parts, args.passes, args.relay_host, args.relay_host_port) == (
        25, "5", "relay.example", 13337)
    assert (args.bucket, args.vid_name) == ("s3://bucket", "video")
    spec = backend_spec(args)
    assert spec.name is None and dict(spec.options) == {"lambda_function": "xc-enc_0123"}
    settings = job_settings(args)
    assert (str(settings.ca_cert), str(settings.server_cert), str(settings.server_key)) == (
        "ca.pem", "srv.pem", "key.pem")
    # -T is the separate relay's port; the relay a coordinator runs itself (no -H) still takes
    # any free port unless --relay-port says otherwise (-T once overwrote it with 13337).
    assert settings.relay_port == 0
    args = build_parser().parse_args(["xcenc", "-b", "b", "--relay-port", "5000"])
    assert (job_settings(args).relay_port, args.relay_host_port) == (5000, 13337)


def test_png2y4m_keeps_mus_letters() -> None:
    args = build_parser().parse_args(["png2y4m", "-n", "4", "-f", "12", "-o", "2", "-v", "v",
                                      "-b", "bucket", "-i", "png8", "-l", "fn", "-r", "eu-west-1"])
    assert (args.n_parts, args.n_frames, args.offset, args.vid_name, args.in_format) == (
        4, 12, 2, "v", "png8")
    assert dict(backend_spec(args).options) == {"lambda_function": "fn",
                                                "lambda_regions": "eu-west-1"}
