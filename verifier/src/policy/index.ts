/** The decision engine: rule selection, image resolution and the ImageReviewer implementation. */
export * from './engine.js';
export { RuleSet } from './rules.js';
export { compileImageGlob, compileNamespaceGlob, type ImageGlob } from './glob.js';
export { resolveImage, type ImageResolution, type ResolutionFailure } from './resolve-image.js';
