// The script-tag bundle `sextant-experiments.min.js`: the core, experiments and features, as the
// global `sextant`.
import * as api from "./index";
import { replay } from "./snippet";

export * from "./experiments";
export * from "./features";
export * from "./index";
replay(api);
