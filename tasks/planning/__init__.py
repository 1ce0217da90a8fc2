"""From a runbook, parameters and servers to a plan: runbook files and their store,
placeholders and where each sits in the shell text, inventory, ad-hoc commands,
rollback plans and sealed secrets. Nothing here runs a command."""
