// Stands in for zeromq/lib/load-addon.js in the single-executable bundle (packaging/build.mjs
// redirects it here): zeromq's own loader reads build/manifest.json from disk, which a single
// file does not have. zeromq's native.js takes `.default` of this module.
import { loadZmqAddon } from "./addon.js";

export default loadZmqAddon();
