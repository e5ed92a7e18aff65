// The layers' running tally of multiply-add work, counted from layer shapes as they run (convolutions,
// linears, attention products). Off (two relaxed loads per layer call) unless someone counts: the bench's
// FlopCounter (bench/flop_counter.h) turns it on for the steps it times.
#pragma once

namespace multilora::models::flops {

bool enabled();
void add(double n);  // FLOPs (2 per multiply-add)

// Counting scopes: begin() zeroes the tally and turns counting on; end() turns it off again.
void begin();
void end();
double total();

}  // namespace multilora::models::flops
