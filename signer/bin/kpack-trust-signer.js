#!/usr/bin/env node
// The `kpack-trust-signer` that npm links into node_modules/.bin. npm links a workspace's bins
// during `npm ci`, before anything is built, and skips a bin whose file does not exist yet; this
// committed file (mode 755) is what it links, and it runs the compiled program.
import '../dist/src/main.js';
