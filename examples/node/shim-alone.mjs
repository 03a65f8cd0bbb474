// What the preview2 shim does on its own, without `grantedFilesystem` (README.md, "Writes through the shim"):
// preopens set with `_setPreopens`, the shim's filesystem as it is.
//
//   node shim-alone.mjs SITE [GENERATED_DIR]
//
// 1. A refresh that must write its lock file fails with "Not supported (os error 58)": wasi-libc opens files
//    for writing with the descriptor flags write + mutate-directory, and the shim's `openAt` throws
//    "unsupported" for mutate-directory.
// 2. The shim has no read-only mode, and what it refuses is a flag, not writing: creating a resource makes
//    its folder (create-directory-at is not refused), then fails on the catalog file (the component removes
//    the folder again).
// Exits 1 if the shim does not behave so (a new shim version may have changed it: then read README.md again).

import { readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { _setPreopens, types } from '@bytecodealliance/preview2-shim/filesystem';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';

const [site, generated = new URL('./generated', import.meta.url).pathname] = process.argv.slice(2);
if (!site) {
  console.error('usage: node shim-alone.mjs SITE [GENERATED_DIR]');
  process.exit(2);
}
const archiveDir = resolve(site, 'archive');

// Record the open-at calls the shim refuses, with the flags the component asked for.
const refused = [];
const openAt = types.Descriptor.prototype.openAt;
types.Descriptor.prototype.openAt = function (pathFlags, path, openFlags, descriptorFlags) {
  try {
    return openAt.call(this, pathFlags, path, openFlags, descriptorFlags);
  } catch (e) {
    refused.push({ path, openFlags, descriptorFlags, error: e });
    throw e;
  }
};
// And the directory changes it lets through.
const mutations = [];
for (const name of ['createDirectoryAt', 'removeDirectoryAt']) {
  const method = types.Descriptor.prototype[name];
  types.Descriptor.prototype[name] = function (path) {
    const result = method.call(this, path);
    mutations.push(`${name}(${path})`);
    return result;
  };
}

_setPreopens({ '/archive': archiveDir }); // guest path → host path; there is no mode to give
const { instantiate } = await import(pathToFileURL(join(generated, 'xnat_plugin.js')).href);
const imports = {
  ...new WASIShim().getImportObject(), // the shim's global filesystem, with the preopens above
  'xnat:archive/progress': { begin() {}, advance() {}, end() {} },
  'xnat:archive/holders': { this: () => '', alive: () => undefined },
  'xnat:archive/digests': { computes: () => false, digestFiles: () => [] },
  'xnat:archive/listings': {
    lists: () => false,
    listFolder: () => {
      throw new Error('listings.listFolder was called, but this host answered that it does not provide it');
    },
    walkTree: () => {
      throw new Error('listings.walkTree was called, but this host answered that it does not provide it');
    },
    nextWalked: () => {
      throw new Error('listings.nextWalked was called, but this host answered that it does not provide it');
    },
    endWalk: () => {
      throw new Error('listings.endWalk was called, but this host answered that it does not provide it');
    },
    watchTree: () => {
      throw new Error('listings.watchTree was called, but this host answered that it does not provide it');
    },
  },
  'xnat:archive/renames': {
    renames: () => false,
    renameFiles: () => {
      throw new Error('renames.renameFiles was called, but this host answered that it does not provide it');
    },
    startRenames: () => {
      throw new Error('renames.startRenames was called, but this host answered that it does not provide it');
    },
    renamed: () => {
      throw new Error('renames.renamed was called, but this host answered that it does not provide it');
    },
  },
  'xnat:archive/types': {},
};
const x = await instantiate(async (path) => WebAssembly.compile(await readFile(join(generated, path))), imports);

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'}  ${what}`);
  if (!ok) failures += 1;
}

// 1. A write.
const scanDir = join(archiveDir, 'DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM');
writeFileSync(join(scanDir, 'added-by-shim.txt'), 'not cataloged\n');
const before = readFileSync(join(scanDir, 'scan_1_catalog.xml'));
const [report] = x.catalogs.refresh({
  resources: ['/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1/scans/1/resources/DICOM'],
  options: {},
  algorithm: 'md5',
  mode: 'apply',
});
console.log(`refresh (apply) → ${report.outcome.tag}: ${JSON.stringify(report.outcome.val)}`);
const first = refused[0];
console.log(`the shim refused open-at(${first?.path}, ${JSON.stringify(first?.descriptorFlags)}) with "${first?.error}"`);
check(
  report.outcome.tag === 'failed' && /Not supported \(os error 58\)/.test(report.outcome.val.val),
  'the write fails with "Not supported (os error 58)"',
);
check(
  first?.error === 'unsupported' && first.descriptorFlags.write && first.descriptorFlags.mutateDirectory,
  'because open-at was asked for write + mutate-directory and the shim throws "unsupported"',
);
check(readFileSync(join(scanDir, 'scan_1_catalog.xml')).equals(before), 'the catalog was not written');

// 2. Not a read-only mode: directories are still created (and removed).
let created;
try {
  created = x.catalogs.createResource({
    resource: '/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1/resources/SHIM',
    tags: [],
  });
} catch (e) {
  created = e.payload ?? e;
}
console.log(`create-resource → ${JSON.stringify(created)}`);
check(created?.tag !== undefined, 'create-resource fails (its catalog cannot be opened for writing)');
console.log(`directory changes the shim carried out: ${mutations.join(', ')}`);
check(
  mutations.some((m) => m.startsWith('createDirectoryAt(') && m.endsWith('/SHIM)')),
  'but its folder was created: the shim refuses a flag, it has no read-only mode',
);

console.log(failures ? `${failures} check(s) failed` : 'shim alone: behaves as README.md describes');
process.exit(failures ? 1 : 0);
