// int8 LUT accumulation step: sum = acc + sign_extend(x), AccW-bit (32) two's complement
// with wrap-around on overflow (the arithmetic of C's uint32_t, numpy's int32 +=).
// Purely combinational.
module halut_int8_acc (
  input  logic [halut_pkg::AccW-1:0] acc_i,
  input  logic [7:0]                 x_i,
  output logic [halut_pkg::AccW-1:0] sum_o
);

  assign sum_o = acc_i + {{(halut_pkg::AccW - 8){x_i[7]}}, x_i};

endmodule
