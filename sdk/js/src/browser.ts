// The script-tag bundle `sextant.min.js`: the core, as the global `sextant`.
import * as api from "./index";
import { replay } from "./snippet";

export * from "./index";
replay(api);
