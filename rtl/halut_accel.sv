// halut_accel: the MADDNESS (halut) accelerator, after Stella Nera (arXiv 2311.10207).
//
// One input beat per clock carries the L = log2(K) gathered features of one codebook of
// one row (codebooks 0..C-1 in order; the accelerator counts c itself). A pipelined
// balanced decision tree encodes the beat (level l compares feature l with a threshold
// from its own memory, C * 2^l entries, selected by (c, prefix of the code)), the code
// selects one LUT entry per output column, and M accumulators sum the C entries of a row
// in codebook order (int8 LUT: int32 wrap-around; fp16 LUT: IEEE fp32 from +0.0, every
// codebook through the fp32 adder). A finished row moves to the output buffer and leaves
// in M/OutLanes beats while the next row accumulates. See docs/rtl.md for the block
// diagram and the cycle timing, docs/address-map.md for the configuration port.
//
// Pipeline (one codebook beat per stage, a global stall enable `adv`):
//   cycle 0      : beat accepted, level 0 compares it (threshold memory read by c)
//   cycle 1..L-1 : level l compares feature l (registered after each level)
//   cycle L      : LUT read of all M columns at (c, code)
//   cycle L+1    : accumulate (c == C-1: the sums go to the output buffer)
//   cycle L+2    : the row's first output beat is valid
// The only stall: a row finishes while the output buffer still holds the previous row
// and does not drain this cycle; then every stage holds and in_ready_o is low (in_ready_o
// depends combinationally on out_ready_i, never on in_valid_i).
//
// Style (lowRISC): every register is foo_q, its next state foo_d comes from always_comb, and
// always_ff only resets foo_q or loads foo_d. The configuration memories (thr_mem, lut_mem:
// written through one port, never reset) keep the memory-write idiom of lowRISC's
// prim_ram_1p (`if (we) mem[waddr] <= wdata`), which Yosys maps as a memory.
module halut_accel #(
  parameter  int unsigned         C        = 32,
  parameter  int unsigned         K        = 16,
  parameter  int unsigned         M        = 16,
  // features/thresholds: ThrFmtFp16 (0) or ThrFmtInt8 (1)
  parameter  halut_pkg::thr_fmt_e ThrFmt   = halut_pkg::ThrFmtFp16,
  // LUT: LutFmtInt8 (0, int32 accumulation) or LutFmtFp16 (1, fp32 accumulation)
  parameter  halut_pkg::lut_fmt_e LutFmt   = halut_pkg::LutFmtInt8,
  parameter  int unsigned         OutLanes = 16,
  localparam int unsigned         L        = (K > 1) ? $clog2(K) : 1,
  localparam int unsigned         FeatW    = (ThrFmt == halut_pkg::ThrFmtFp16) ?
                                             halut_pkg::Fp16W : 8,
  localparam int unsigned         CW       = (C > 1) ? $clog2(C) : 1,
  localparam int unsigned         MW       = (M > 1) ? $clog2(M) : 1,
  localparam int unsigned         AW       = 1 + MW + CW + L
) (
  input  logic                                clk_i,
  input  logic                                rst_ni,
  // configuration write port (one write per cycle, always accepted)
  input  logic                                cfg_valid_i,
  input  logic [AW-1:0]                       cfg_addr_i,
  input  logic [halut_pkg::CfgDataW-1:0]      cfg_data_i,
  // input stream: one codebook beat (L features) per handshake
  input  logic                                in_valid_i,
  output logic                                in_ready_o,
  input  logic [L*FeatW-1:0]                  in_data_i,
  // output stream: M/OutLanes beats per row, lane j of beat b is column b*OutLanes+j
  output logic                                out_valid_o,
  input  logic                                out_ready_i,
  output logic [OutLanes*halut_pkg::AccW-1:0] out_data_o
);

  localparam int unsigned AccW = halut_pkg::AccW;
  localparam int unsigned LutW = (LutFmt == halut_pkg::LutFmtFp16) ? halut_pkg::Fp16W : 8;
  localparam int unsigned NumBeats = (OutLanes > 0) ? M / OutLanes : 1;
  localparam int unsigned BW = (NumBeats > 1) ? $clog2(NumBeats) : 1;
  localparam int unsigned LutDepth = C * K;
  localparam int unsigned LIW = $clog2(LutDepth);  // >= 1 as K >= 2

  // ---- parameter checks (elaboration time) ------------------------------------------------
  // $error in a generate block stops both Verilator and Yosys at elaboration. Yosys does not
  // format arguments, so the messages are plain text (Verilator adds the instance name).
  if (K < 2 || K > 256 || (K & (K - 1)) != 0) begin : g_bad_k
    $error("halut_accel: parameter K must be a power of two between 2 and 256");
  end
  if (C < 1 || C > 1024) begin : g_bad_c
    $error("halut_accel: parameter C must be between 1 and 1024");
  end
  if (M < 1 || M > 1024) begin : g_bad_m
    $error("halut_accel: parameter M must be between 1 and 1024");
  end
  if (ThrFmt != halut_pkg::ThrFmtFp16 && ThrFmt != halut_pkg::ThrFmtInt8) begin : g_bad_thr
    $error("halut_accel: parameter ThrFmt must be 0 (fp16) or 1 (int8)");
  end
  if (LutFmt != halut_pkg::LutFmtInt8 && LutFmt != halut_pkg::LutFmtFp16) begin : g_bad_lut
    $error("halut_accel: parameter LutFmt must be 0 (int8) or 1 (fp16)");
  end
  if (OutLanes < 1 || OutLanes > M || (M % OutLanes) != 0) begin : g_bad_lanes
    $error("halut_accel: parameter OutLanes must divide M");
  end
  if (M > OutLanes * C) begin : g_bad_rate
    $error("halut_accel: M > OutLanes * C: a row's M/OutLanes output beats must fit in C cycles");
  end

  // ---- configuration decode -------------------------------------------------------------
  logic          cfg_lut;   // address MSB: 1 = LUT entry, 0 = threshold
  logic [CW-1:0] cfg_c;
  logic [L-1:0]  cfg_k;     // threshold: heap node; LUT: prototype index k
  logic [MW-1:0] cfg_m;
  logic          cfg_c_ok;

  assign cfg_lut  = cfg_addr_i[AW-1];
  assign cfg_m    = cfg_addr_i[CW+L +: MW];
  assign cfg_c    = cfg_addr_i[L +: CW];
  assign cfg_k    = cfg_addr_i[L-1:0];
  assign cfg_c_ok = {1'b0, cfg_c} < (CW+1)'(C);

  // the int8 formats use only the low byte of the data word (the high byte is its sign
  // extension); unused bits are collected here (Verilator ignores *unused* signals)
  logic unused_cfg_data;
  assign unused_cfg_data = ^cfg_data_i;

  // ---- input codebook counter -------------------------------------------------------------
  logic          adv;       // global advance enable (low: every stage holds)
  logic          in_fire;
  logic [CW-1:0] c_in_d, c_in_q;

  assign in_ready_o = adv;
  assign in_fire    = in_valid_i && adv;

  always_comb begin
    c_in_d = c_in_q;
    if (in_fire) begin
      c_in_d = (c_in_q == CW'(C - 1)) ? '0 : c_in_q + 1'b1;
    end
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      c_in_q <= '0;
    end else begin
      c_in_q <= c_in_d;
    end
  end

  // ---- tree: one stage per level ---------------------------------------------------------
  // p_*_q[l]: the beat after level l compared (valid, codebook, code prefix of l+1 bits in
  // the low bits, features l+1..L-1 in the low slots)
  logic                 p_v_q    [L];
  logic [CW-1:0]        p_c_q    [L];
  logic [L-1:0]         p_code_q [L];
  logic [L*FeatW-1:0]   p_feat_q [L];

  for (genvar l = 0; l < L; l++) begin : g_lvl
    localparam int unsigned Depth = C * (2 ** l);
    localparam int unsigned IW    = (Depth > 1) ? $clog2(Depth) : 1;
    localparam int unsigned Base  = (2 ** l) - 1; // heap index of the level's first node

    logic               v_in;
    logic [CW-1:0]      c_in;
    logic [L-1:0]       code_in;
    logic [L*FeatW-1:0] feat_in;

    if (l == 0) begin : g_first
      assign v_in    = in_fire;
      assign c_in    = c_in_q;
      assign code_in = '0;
      assign feat_in = in_data_i;
    end else begin : g_next
      assign v_in    = p_v_q[l-1];
      assign c_in    = p_c_q[l-1];
      assign code_in = p_code_q[l-1];
      assign feat_in = p_feat_q[l-1];
    end

    // threshold memory of this level: entry (c << l) | prefix, flip-flops, not reset
    logic [FeatW-1:0] thr_mem [Depth];
    logic             thr_we;
    logic [IW-1:0]    thr_waddr, thr_raddr;
    logic [FeatW-1:0] thr_wdata, thr;
    logic             bit_l;

    // node j is on level l iff 2^l <= j + 1 < 2^(l+1)
    assign thr_we    = cfg_valid_i && !cfg_lut && cfg_c_ok &&
                       (((32'(cfg_k) + 32'd1) >> l) == 32'd1);
    assign thr_waddr = IW'((32'(cfg_c) << l) + 32'(cfg_k) - 32'(Base));
    assign thr_wdata = cfg_data_i[FeatW-1:0];
    assign thr_raddr = IW'((32'(c_in) << l) | 32'(code_in));

    always_ff @(posedge clk_i) begin
      if (thr_we) begin
        thr_mem[thr_waddr] <= thr_wdata;
      end
    end

    assign thr = thr_mem[thr_raddr];

    halut_thr_gt #(.ThrFmt(ThrFmt)) u_cmp (
      .f_i (feat_in[FeatW-1:0]),
      .t_i (thr),
      .gt_o(bit_l)
    );

    // next state of stage l (loaded when adv is high: every stage holds while it is low)
    logic               p_v_d;
    logic [CW-1:0]      p_c_d;
    logic [L-1:0]       p_code_d;
    logic [L*FeatW-1:0] p_feat_d;

    assign p_v_d    = v_in;
    assign p_c_d    = c_in;
    assign p_code_d = (code_in << 1) | L'(bit_l);
    assign p_feat_d = feat_in >> FeatW; // the next level's feature moves to slot 0

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        p_v_q[l]    <= 1'b0;
        p_c_q[l]    <= '0;
        p_code_q[l] <= '0;
        p_feat_q[l] <= '0;
      end else if (adv) begin
        p_v_q[l]    <= p_v_d;
        p_c_q[l]    <= p_c_d;
        p_code_q[l] <= p_code_d;
        p_feat_q[l] <= p_feat_d;
      end
    end
  end

  // ---- LUT read stage and accumulation stage ------------------------------------------------
  logic                lut_v;
  logic [CW-1:0]       lut_c;
  logic [L-1:0]        lut_code;
  logic                a_v_d, a_v_q;      // accumulation stage: valid, LUT values and
  logic                a_first_d, a_first_q;  // whether it holds codebook 0 (a row starts
  logic                a_last_d, a_last_q;    // from zero) or codebook C-1 (the row is done),
                                              // decoded a stage early, off the adder path
  logic [LutW-1:0]     a_val_q [M];
  logic [AccW-1:0]     acc_q   [M];
  logic [AccW-1:0]     obuf_q  [M];
  logic                row_done;   // the accumulation stage holds codebook C-1

  assign lut_v    = p_v_q[L-1];
  assign lut_c    = p_c_q[L-1];
  assign lut_code = p_code_q[L-1];
  assign row_done = a_v_q && a_last_q;

  // p_feat_q[L-1] is all zeros (every feature consumed); read here so lint sees it used
  logic unused_feat;
  assign unused_feat = ^p_feat_q[L-1];

  assign a_v_d     = lut_v;
  assign a_first_d = (lut_c == '0);
  assign a_last_d  = (lut_c == CW'(C - 1));

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      a_v_q     <= 1'b0;
      a_first_q <= 1'b0;
      a_last_q  <= 1'b0;
    end else if (adv) begin
      a_v_q     <= a_v_d;
      a_first_q <= a_first_d;
      a_last_q  <= a_last_d;
    end
  end

  for (genvar m = 0; m < M; m++) begin : g_col
    // LUT memory of column m: entry (c << L) | k, flip-flops, not reset
    logic [LutW-1:0]    lut_mem [LutDepth];
    logic               lut_we;
    logic [LIW-1:0]     lut_raddr, lut_waddr;
    logic [LutW-1:0]    lut_wdata;
    logic [AccW-1:0]    base, sum;

    assign lut_we    = cfg_valid_i && cfg_lut && cfg_c_ok && (cfg_m == MW'(m));
    assign lut_raddr = LIW'((32'(lut_c) << L) | 32'(lut_code));
    assign lut_waddr = LIW'((32'(cfg_c) << L) | 32'(cfg_k));
    assign lut_wdata = cfg_data_i[LutW-1:0];

    always_ff @(posedge clk_i) begin
      if (lut_we) begin
        lut_mem[lut_waddr] <= lut_wdata;
      end
    end

    // a row starts from zero (+0.0 for fp32) at codebook 0
    assign base = a_first_q ? '0 : acc_q[m];

    if (LutFmt == halut_pkg::LutFmtFp16) begin : g_fp
      logic [halut_pkg::Fp32W-1:0] val32;
      halut_fp16_to_fp32 u_cvt (
        .h_i(a_val_q[m]),
        .f_o(val32)
      );
      halut_fp32_add u_add (
        .a_i  (base),
        .b_i  (val32),
        .sum_o(sum)
      );
    end else begin : g_int
      halut_int8_acc u_add (
        .acc_i(base),
        .x_i  (a_val_q[m]),
        .sum_o(sum)
      );
    end

    // next state of column m: the LUT value read at (c, code), loaded when adv is high; the
    // row's sum goes to the accumulator, or for its last codebook to the output buffer (write
    // enables rather than a hold in the next state: an unpacked-array register written only
    // when it changes also simulates faster in Verilator)
    logic [LutW-1:0] a_val_d;
    logic [AccW-1:0] acc_d, obuf_d;
    logic            acc_en, obuf_en;

    assign a_val_d = lut_mem[lut_raddr];
    assign acc_d   = sum;
    assign obuf_d  = sum;
    assign acc_en  = adv && a_v_q && !row_done;
    assign obuf_en = adv && a_v_q && row_done;

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        a_val_q[m] <= '0;
      end else if (adv) begin
        a_val_q[m] <= a_val_d;
      end
    end

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        acc_q[m] <= '0;
      end else if (acc_en) begin
        acc_q[m] <= acc_d;
      end
    end

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        obuf_q[m] <= '0;
      end else if (obuf_en) begin
        obuf_q[m] <= obuf_d;
      end
    end
  end

  // ---- output buffer ----------------------------------------------------------------------
  logic          obuf_busy_d, obuf_busy_q;
  logic [BW-1:0] beat_d, beat_q;
  logic          out_fire, out_last, obuf_free;

  assign out_valid_o = obuf_busy_q;
  assign out_fire    = obuf_busy_q && out_ready_i;
  assign out_last    = out_fire && (beat_q == BW'(NumBeats - 1));
  assign obuf_free   = !obuf_busy_q || out_last;
  assign adv         = !(row_done && !obuf_free);

  always_comb begin
    obuf_busy_d = obuf_busy_q;
    beat_d      = beat_q;
    if (row_done && adv) begin
      // a finished row enters the buffer (the previous one has left or leaves now)
      obuf_busy_d = 1'b1;
      beat_d      = '0;
    end else if (out_last) begin
      obuf_busy_d = 1'b0;
      beat_d      = '0;
    end else if (out_fire) begin
      beat_d = beat_q + 1'b1;
    end
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      obuf_busy_q <= 1'b0;
      beat_q      <= '0;
    end else begin
      obuf_busy_q <= obuf_busy_d;
      beat_q      <= beat_d;
    end
  end

  for (genvar j = 0; j < OutLanes; j++) begin : g_lane
    assign out_data_o[j*AccW +: AccW] = obuf_q[MW'(32'(beat_q) * OutLanes + j)];
  end

endmodule
