// Parallel-prefix (Kogge-Stone) adder: {co_o, sum_o} = a_i + b_i + ci_i, any Width.
//
// Used by the fp32 adder's additions, subtractions (a + ~b + 1) and rounding increment
// (b = 0, ci = round): the carries come from log2(Width) levels of generate / propagate
// pairs, written out gate by gate. The plain `+` of the same width is mapped by this
// flow's Liberty `abc` as a carry chain (Yosys's Brent-Kung `$lcu` did not survive abc's
// restructuring): measured here, 32 bits reg-to-reg on osu018, `+` 4.68 ns / 35 cells deep,
// this module 2.82 ns (+11 % area). Purely combinational; every signal is a flat vector
// written bit by bit from generate blocks (the Yosys-safe subset, TOOLCHAIN.md).
module halut_pfx_add #(
  parameter int unsigned Width = 8
) (
  input  logic [Width-1:0] a_i,
  input  logic [Width-1:0] b_i,
  input  logic             ci_i,
  output logic [Width-1:0] sum_o,
  output logic             co_o
);

  if (Width < 1) begin : g_bad_width
    $error("halut_pfx_add: parameter Width must be at least 1");
  end

  localparam int unsigned Lv = (Width > 1) ? $clog2(Width) : 1;  // prefix levels

  // level l, bit i at [l*Width + i]: generate / propagate of bits i down to i - 2^l + 1
  // (down to 0 once that reaches below 0; the carry-in counts as a generate below bit 0)
  logic [(Lv+1)*Width-1:0] gen, prop;
  logic [Width-1:0]        p0;

  assign p0 = a_i ^ b_i;

  for (genvar i = 0; i < Width; i++) begin : g_bit
    if (i == 0) begin : g_lsb
      assign gen[i] = (a_i[i] & b_i[i]) | (p0[i] & ci_i);
    end else begin : g_other
      assign gen[i] = a_i[i] & b_i[i];
    end
    assign prop[i] = p0[i];
  end

  for (genvar l = 0; l < Lv; l++) begin : g_lvl
    for (genvar i = 0; i < Width; i++) begin : g_node
      if (i >= (1 << l)) begin : g_comb
        assign gen[(l+1)*Width + i]  = gen[l*Width + i] |
                                       (prop[l*Width + i] & gen[l*Width + i - (1 << l)]);
        assign prop[(l+1)*Width + i] = prop[l*Width + i] & prop[l*Width + i - (1 << l)];
      end else begin : g_pass
        assign gen[(l+1)*Width + i]  = gen[l*Width + i];
        assign prop[(l+1)*Width + i] = prop[l*Width + i];
      end
    end
  end

  // carry into bit i: the carry-in for bit 0, else the prefix generate of bits i-1..0
  for (genvar i = 0; i < Width; i++) begin : g_sum
    if (i == 0) begin : g_lsb
      assign sum_o[i] = p0[i] ^ ci_i;
    end else begin : g_other
      assign sum_o[i] = p0[i] ^ gen[Lv*Width + i - 1];
    end
  end
  assign co_o = gen[Lv*Width + Width - 1];

  // the last level's propagate terms are not needed (only its generate terms are)
  logic unused_prop;
  assign unused_prop = ^prop[Lv*Width +: Width];

endmodule
