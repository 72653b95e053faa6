halut_pkg.sv
halut_fp16_gt.sv
halut_thr_gt.sv
halut_fp16_to_fp32.sv
halut_fp32_add.sv
halut_int8_acc.sv
halut_accel.sv
