"""Shell completion for the `tweetmesh` command: a bash script made from its argparse parser."""

from __future__ import annotations

import argparse
import shlex

_SCRIPT = """# tweetmesh completion (bash; zsh: autoload -U +X bashcompinit && bashcompinit first)
_tweetmesh() {{
    local word="${{COMP_WORDS[COMP_CWORD]}}" path="" i
    # The command's path so far: its words that are command names (not options or their values).
    for ((i = 1; i < COMP_CWORD; i++)); do
        case " $(_tweetmesh_words "$path") " in
            *" ${{COMP_WORDS[i]}} "*) [[ ${{COMP_WORDS[i]}} != -* ]] && path="$path ${{COMP_WORDS[i]}}" ;;
        esac
    done
    COMPREPLY=($(compgen -W "$(_tweetmesh_words "$path")" -- "$word"))
}}
_tweetmesh_words() {{
    case "$1" in
{cases}
    esac
}}
complete -F _tweetmesh tweetmesh
"""


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {
        name: sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    }


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]


def _cases(parser: argparse.ArgumentParser, path: str, cases: list[str]) -> None:
    """One `case` arm per command path: the words that may come next (subcommands, then options)."""
    commands = _commands(parser)
    words = " ".join([*commands, *_options(parser)])
    cases.append(f"        {shlex.quote(path)}) echo {shlex.quote(words)} ;;")
    for name, sub in commands.items():
        _cases(sub, f"{path} {name}", cases)


def completion_script(parser: argparse.ArgumentParser) -> str:
    """A bash script completing `parser`'s commands, subcommands and options."""
    cases: list[str] = []
    _cases(parser, "", cases)
    return _SCRIPT.format(cases="\n".join(cases))
