"""Front ends: `kernel-gossip` and one module per subcommand; nothing else imports them."""
