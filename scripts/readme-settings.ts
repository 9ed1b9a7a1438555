// Writes the configuration table of README.md from the settings' schemas (src/core/settings.ts):
// `npm run docs:settings`. test/unit/settings-readme.test.ts fails until the two agree.
import { readFileSync, writeFileSync } from 'node:fs';
import { replaceSettingsTable } from '../src/core/settings.js';

const path = new URL('../README.md', import.meta.url);
const before = readFileSync(path, 'utf8');
const after = replaceSettingsTable(before);
if (after === before) console.log('README.md: the configuration table is current');
else {
  writeFileSync(path, after);
  console.log('README.md: configuration table rewritten from src/core/settings.ts');
}
