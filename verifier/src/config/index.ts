/** The verifier's configuration: types, the pure parser and the file loader. */
export * from './types.js';
export { parseConfig, CONFIG_DEFAULTS, DEFAULT_BREAK_GLASS_ANNOTATION } from './parse.js';
export type { ConfigFileReader } from './parse.js';
export { loadConfig } from './load.js';
