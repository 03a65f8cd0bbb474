// The xnat:archive library component in Node: listing, validation and refresh on a site written by
// `xnat-archive demo --dir SITE`, with read-only and read-write grants, and the sandbox put to the test.
//
//   npm ci && npm run transpile        # jco → ./generated (see package.json)
//   node main.mjs SITE [GENERATED_DIR]
//
// Prints what each call returned; exits 1 if anything did not behave as expected.

import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { XnatArchive, componentError, grant } from './xnat-archive.mjs';

const [site, generated = new URL('./generated', import.meta.url).pathname] = process.argv.slice(2);
if (!site) {
  console.error('usage: node main.mjs SITE [GENERATED_DIR]   (SITE written by `xnat-archive demo --dir SITE`)');
  process.exit(2);
}
const prearchiveDir = resolve(site, 'prearchive');
const archiveDir = resolve(site, 'archive');

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'}  ${what}`);
  if (!ok) failures += 1;
}
/** The component's error as `kind: message`, or the host's exception. */
async function attempt(f) {
  try {
    return { value: await f() };
  } catch (e) {
    const error = componentError(e);
    if (error) return { error };
    throw e;
  }
}
const brief = (report) =>
  `${report.resource.split('/').slice(-3).join('/')}: ${report.outcome.tag}` +
  (report.outcome.tag === 'failed' ? ` (${report.outcome.val.tag}: ${report.outcome.val.val})` : '') +
  (report.added.length ? `, added ${report.added.join(' ')}` : '');

const lib = await XnatArchive.load(generated);
const refresh = (resources, mode) => (x) =>
  x.catalogs.refresh({ resources, options: {}, algorithm: 'md5', mode, user: 'node', eventId: undefined, trustUnchanged: undefined });

// --- the prearchive listing: /prearchive read-only ---------------------------------------------------------
const readPre = grant('/prearchive', prearchiveDir, false);
const rows = await lib.call([readPre], (x) => x.prearchive.listSessions(undefined));
console.log(`prearchive.listSessions → ${rows.length} sessions`);
for (const row of rows) console.log(`      ${row.project}/${row.timestamp}/${row.folderName}  ${row.status}`);
check(rows.length > 0 && rows.every((r) => r.url.startsWith('/prearchive/projects/')), 'the listing has rows with XNAT urls');

// --- validate-archive: /prearchive and /archive, both read-only -------------------------------------------
const anon = rows.find((r) => r.project === 'Unassigned');
const request = {
  src: [anon.url],
  overwrite: 'none',
  quarantine: false,
  triggerPipelines: false,
};
const notices = await lib.call([readPre, grant('/archive', archiveDir, false)], (x) => x.validation.validate(request));
console.log(`validation.validate(${anon.url}) →`);
for (const n of notices) console.log(`      ${n.code} ${n.kind} ${n.message}`);
check(notices.some((n) => n.code === 6 && n.kind === 'FAIL'), 'an Unassigned session cannot be archived (code 6 FAIL)');

// --- refresh: one directory, /archive, read-only then read-write ------------------------------------------
const session = '/archive/projects/DEMO/subjects/SUBJ1/experiments/SUBJ1_MR1';
const scan1 = `${session}/scans/1/resources/DICOM`;
const scanDir = join(archiveDir, 'DEMO/arc001/SUBJ1_MR1/SCANS/1/DICOM');
const catalog = join(scanDir, 'scan_1_catalog.xml');
const readArc = [grant('/archive', archiveDir, false)];
const writeArc = [grant('/archive', archiveDir, true)];

let reports = await lib.call(readArc, refresh([session], 'verify'));
console.log(`catalogs.refresh(verify, read-only) →`);
for (const r of reports) console.log(`      ${brief(r)}`);
check(reports.length > 0 && reports.every((r) => r.outcome.tag === 'unchanged'), 'verify: every catalog matches the disk');

writeFileSync(join(scanDir, 'added-by-node.txt'), 'a file the catalog does not list yet\n');
const before = readFileSync(catalog);
reports = await lib.call(readArc, refresh([scan1], 'apply'));
console.log(`catalogs.refresh(apply, read-only) →`);
for (const r of reports) console.log(`      ${brief(r)}`);
check(
  reports.length === 1 && reports[0].outcome.tag === 'failed' && reports[0].outcome.val.tag === 'forbidden',
  'apply under a read-only grant is refused (forbidden)',
);
check(readFileSync(catalog).equals(before), 'the catalog is byte-identical after the refused write');

const phases = [];
let advanced = 0n;
const progress = {
  begin: (phase, total) => phases.push(`${phase} (${total})`),
  advance: (units) => (advanced += units),
  end: () => {},
};
reports = await lib.call(writeArc, refresh([scan1], 'apply'), progress);
console.log(`catalogs.refresh(apply, read-write) →`);
for (const r of reports) console.log(`      ${brief(r)}`);
console.log(`      progress: ${phases.join(', ') || 'none'}; ${advanced} units`);
check(
  reports.length === 1 && reports[0].outcome.tag === 'written' && reports[0].added.includes('added-by-node.txt'),
  'apply under a read-write grant writes the catalog',
);
check(readFileSync(catalog, 'utf8').includes('added-by-node.txt'), 'the catalog on disk lists the new file');
check(phases.length > 0, 'the host received progress (xnat:archive/progress)');

reports = await lib.call(readArc, refresh([session], 'verify'));
check(reports.every((r) => r.outcome.tag === 'unchanged'), 'verify after the write: clean');

// --- the sandbox ------------------------------------------------------------------------------------------
// Not granted: with only /archive, the prearchive does not exist for the component.
const ungranted = await attempt(() => lib.call(readArc, (x) => x.prearchive.listSessions(undefined)));
console.log(`prearchive.listSessions with only /archive granted → ${JSON.stringify(ungranted.error ?? ungranted.value)}`);
check(ungranted.error !== undefined, 'a directory that is not granted cannot be read');

// Symbolic links inside the grant that lead out of it (relative and absolute) are not followed; the same
// tree inside the grant is refreshed (dry-run, nothing written).
const outside = resolve(site, 'outside-the-grant');
mkdirSync(join(outside, 'resources/NOTES'), { recursive: true });
writeFileSync(join(outside, 'resources/NOTES/secret.txt'), 'not for the component\n');
mkdirSync(join(archiveDir, 'INSIDE/resources/NOTES'), { recursive: true });
writeFileSync(join(archiveDir, 'INSIDE/resources/NOTES/note.txt'), 'inside the grant\n');
symlinkSync('../outside-the-grant', join(archiveDir, 'ESCAPE'));
symlinkSync(outside, join(archiveDir, 'ESCAPEABS'));
for (const project of ['INSIDE', 'ESCAPE', 'ESCAPEABS']) {
  const uri = `/archive/projects/${project}/resources/NOTES`;
  const result = await attempt(() => lib.call(writeArc, refresh([uri], 'dry-run')));
  const shown = result.error ? `${result.error.tag}: ${result.error.val}` : result.value.map(brief).join('; ');
  console.log(`catalogs.refresh(dry-run, ${uri}) → ${shown}`);
  if (project === 'INSIDE') {
    check(result.value?.[0]?.added.includes('note.txt'), 'inside the grant: the file is found');
  } else {
    check(
      !JSON.stringify(result, (_, v) => (typeof v === 'bigint' ? `${v}` : v)).includes('secret.txt'),
      `${project} (${project === 'ESCAPE' ? 'a relative' : 'an absolute'} symlink out of the grant): nothing outside is seen`,
    );
  }
}

console.log(failures ? `${failures} check(s) failed` : 'node: all checks passed');
process.exit(failures ? 1 : 0);
