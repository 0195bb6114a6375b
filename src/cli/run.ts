// Run the CLI from source (tests use this with tsx; bin/tsplice.mjs uses the build).
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
