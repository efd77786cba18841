"""Keys from a physical IR remote (decoded by lircd) turned into Buttons presses."""
