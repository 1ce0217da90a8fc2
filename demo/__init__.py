"""Demo fleet for Patchbay: fake game hosts served over SSH, no OpenSSH required."""
