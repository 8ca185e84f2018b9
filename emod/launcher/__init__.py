"""The launcher: ``emod run`` starts the stages as child processes and talks to systemd."""
