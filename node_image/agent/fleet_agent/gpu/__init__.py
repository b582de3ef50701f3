"""GPU health: NVML behind a narrow interface (backend), and the rules that judge its readings."""
