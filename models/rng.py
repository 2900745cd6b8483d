"""Capture and restore every random stream a trainer draws from, for exact resume."""

import torch


def capture_rng(device: torch.device, *generators: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "generators": [g.get_state() for g in generators]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device, *generators: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    for g, g_state in zip(generators, state["generators"]):
        g.set_state(g_state)
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
