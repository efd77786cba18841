"""Hardware on the Raspberry Pi itself: the pair button and the status LED (gpiozero)."""
