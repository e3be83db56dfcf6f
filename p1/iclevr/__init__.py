"""NYCU DL Lab 6: multi-label conditional DDPM on iCLEVR."""
