"""The producer's commands (`python invoker.py COMMAND …`), one module per lesson.

`commands/lesson_NN.py` defines `add_commands(sub)`, which adds that lesson's subcommands to
the invoker's parser, and a `run_…(options)` function per command; `invoker.py` finds every
`lesson_*` module here, in order. `commands.common` has what they share: one-line errors, exit
codes, and waiting for results with a limit.
"""
