// the multiply-accumulate baseline (docs/mac-baseline.md): one stand-alone top
mac_accel.sv
