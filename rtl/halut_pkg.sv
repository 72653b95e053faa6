// Shared constants of the halut accelerator: format codes, IEEE constants and the
// configuration address map field widths (the map itself is defined once, in
// learning/program.py's AddressMap, and documented in docs/address-map.md).
package halut_pkg;

  // ThrFmt: format of the features and thresholds
  localparam int unsigned ThrFmtFp16 = 0;
  localparam int unsigned ThrFmtInt8 = 1;
  // LutFmt: format of the LUT entries (and with it the accumulator)
  localparam int unsigned LutFmtInt8 = 0;
  localparam int unsigned LutFmtFp16 = 1;

  // width of the configuration data port (fp16 bits, or int8 sign-extended)
  localparam int unsigned CfgDataW = 16;
  // width of one accumulator / output lane (int32 two's complement, or fp32 bits)
  localparam int unsigned AccW = 32;

  // canonical quiet NaN produced by the fp32 adder for every NaN result
  localparam logic [31:0] Fp32QNaN = 32'h7FC0_0000;

endpackage
