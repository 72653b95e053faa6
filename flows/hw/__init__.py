"""Hardware flows on the accelerator's RTL: lint (Verilator), synthesis (Yosys onto a Liberty
library), static timing (OpenSTA), place-and-route (qflow, OpenROAD-flow-scripts), gate-level
simulation, parameter sweeps and an HTML report. See docs/hardware.md.

Every flow writes its logs, inputs and a ``<flow>.json`` result into one run directory, so a
run can be inspected, rendered (:mod:`flows.hw.report`) or resumed (:mod:`flows.hw.sweep`).
"""
