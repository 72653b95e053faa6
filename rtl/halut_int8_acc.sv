// int8 LUT accumulation step: sum = acc + sign_extend(x), 32-bit two's complement with
// wrap-around on overflow (the arithmetic of C's uint32_t, numpy's int32 +=).
// Purely combinational.
module halut_int8_acc (
  input  logic [31:0] acc_i,
  input  logic [7:0]  x_i,
  output logic [31:0] sum_o
);

  assign sum_o = acc_i + {{24{x_i[7]}}, x_i};

endmodule
