// Runs the xnat:archive library component (transpiled by jco) in Node, with directory grants.
//
//   const lib = await XnatArchive.load('./generated');          // compiles the core modules once
//   const rows = await lib.call([grant('/prearchive', dir, false)], (x) => x.prearchive.listSessions(undefined));
//
// Every call gets a fresh instance with its own grants, as the Rust host does. A grant is a host directory
// seen by the component at a guest path (`/archive`, `/prearchive`), read-only or read-write.
//
// The preview2 shim's filesystem alone cannot run the component's writes, and has no read-only mode
// (README.md here explains both, with the shim's source). `grantedFilesystem` wraps it: read-write grants
// accept the `mutate-directory` flag wasi-libc sends with every write, read-only grants refuse every
// write with the `read-only` error code.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { createFilesystem } from '@bytecodealliance/preview2-shim/filesystem';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';

/** A directory grant: `host` is seen by the component at `guest`. */
export function grant(guest, host, writable) {
  return { guest, host, writable };
}

/** The component's answer, when a call returns `result<_, error>` with an error (jco throws it). */
export function componentError(e) {
  return e && typeof e === 'object' && 'payload' in e && e.payload && typeof e.payload.tag === 'string'
    ? e.payload
    : undefined;
}

const symbolDispose = Symbol.dispose || Symbol.for('dispose'); // as jco's bindings and the shim name it

// The methods of `wasi:filesystem/types.descriptor` (WASI 0.2) passed through to the shim unchanged, and
// whether each writes (refused under a read-only grant). `openAt`, `linkAt`, `renameAt`, `getFlags` and
// `isSameObject` are written out below.
const PASS_THROUGH = {
  readViaStream: false,
  writeViaStream: true,
  appendViaStream: true,
  advise: false,
  syncData: false,
  getType: false,
  setSize: true,
  setTimes: true,
  read: false,
  write: true,
  readDirectory: false,
  sync: false,
  createDirectoryAt: true,
  stat: false,
  statAt: false,
  setTimesAt: true,
  readlinkAt: false,
  removeDirectoryAt: true,
  symlinkAt: true,
  unlinkFileAt: true,
  metadataHash: false,
  metadataHashAt: false,
};

/**
 * A `wasi:filesystem` implementation (`{ types, preopens }`) that sees exactly these grants. Built on the
 * shim's `createFilesystem`; each of its descriptors is wrapped with the mode of the grant it came from.
 */
export function grantedFilesystem(grants) {
  const shim = createFilesystem({ preopens: Object.fromEntries(grants.map((g) => [g.guest, g.host])) });

  class Descriptor {
    #inner;
    #writable;
    #flags;

    constructor(inner, writable, flags) {
      this.#inner = inner;
      this.#writable = writable;
      this.#flags = flags;
    }

    #refuseWrite() {
      if (!this.#writable) throw 'read-only';
    }

    getFlags() {
      // The shim keeps no flags for a preopen (undefined); answer what the grant allows.
      return this.#flags;
    }

    openAt(pathFlags, path, openFlags, descriptorFlags) {
      if (descriptorFlags.write || descriptorFlags.mutateDirectory || openFlags.create || openFlags.truncate) {
        this.#refuseWrite();
      }
      // wasi-libc asks for `mutate-directory` with every write; the shim refuses that flag outright
      // ("unsupported", errno ENOTSUP: "Not supported"). Here the grant decides: read-write may mutate.
      const inner = this.#inner.openAt(pathFlags, path, openFlags, { ...descriptorFlags, mutateDirectory: false });
      return new Descriptor(inner, this.#writable, { ...descriptorFlags });
    }

    linkAt(oldPathFlags, oldPath, newDescriptor, newPath) {
      this.#refuseWrite();
      newDescriptor.#refuseWrite();
      return this.#inner.linkAt(oldPathFlags, oldPath, newDescriptor.#inner, newPath);
    }

    renameAt(oldPath, newDescriptor, newPath) {
      this.#refuseWrite();
      newDescriptor.#refuseWrite();
      return this.#inner.renameAt(oldPath, newDescriptor.#inner, newPath);
    }

    isSameObject(other) {
      return this.#inner === other.#inner;
    }

    [symbolDispose]() {
      // The component dropped its handle: the shim closes the host file.
      this.#inner[symbolDispose]?.();
    }

    static {
      for (const [name, writes] of Object.entries(PASS_THROUGH)) {
        Descriptor.prototype[name] = function (...args) {
          if (writes) this.#refuseWrite();
          return this.#inner[name](...args);
        };
      }
    }
  }

  const directories = shim.preopens.getDirectories().map(([inner, guest]) => {
    const { writable } = grants.find((g) => g.guest === guest);
    return [new Descriptor(inner, writable, { read: true, mutateDirectory: writable }), guest];
  });
  return {
    types: { ...shim.types, Descriptor },
    preopens: { getDirectories: () => [...directories] },
  };
}

/** The loaded component: compiled once, instantiated per call. */
/** A function this host answers it does not provide: calling it throws. */
function neverCalled(name) {
  return () => {
    throw new Error(`${name} was called, but this host answered that it does not provide it`);
  };
}

export class XnatArchive {
  #instantiate;
  #modules;
  #dir;

  static async load(dir, name = 'xnat_plugin') {
    const lib = new XnatArchive();
    lib.#dir = dir;
    lib.#instantiate = (await import(pathToFileURL(join(dir, `${name}.js`)).href)).instantiate;
    lib.#modules = new Map();
    return lib;
  }

  #module(path) {
    if (!this.#modules.has(path)) {
      this.#modules.set(path, readFile(join(this.#dir, path)).then((bytes) => WebAssembly.compile(bytes)));
    }
    return this.#modules.get(path);
  }

  /**
   * Runs `f(exports)` on a fresh instance that sees exactly `grants`. `progress` implements the
   * component's `xnat:archive/progress` import (begin/advance/end); by default it is ignored.
   */
  async call(grants, f, progress = { begin() {}, advance() {}, end() {} }) {
    const wasi = new WASIShim({
      filesystem: grantedFilesystem(grants),
      sandbox: { env: {}, args: ['xnat-archive'] }, // nothing of the host's environment
    });
    const imports = {
      ...wasi.getImportObject(),
      'xnat:archive/progress': progress,
      // Who holds locks: this host cannot tell, so a dead holder's lock waits for its 30 s lease.
      'xnat:archive/holders': { this: () => '', alive: () => undefined },
      // Digests computed by the host: this one does not (`computes` is false), so the component hashes the
      // files itself and never calls `digestFiles`.
      'xnat:archive/digests': { computes: () => false, digestFiles: () => [] },
      // Folder listings made by the host: this one does not (`lists` is false), so the component lists
      // through wasi:filesystem and never calls `listFolder`, the walks or `watchTree` (were one called, it
      // would throw, never pass for an empty folder).
      'xnat:archive/listings': {
        lists: () => false,
        listFolder: neverCalled('listings.listFolder'),
        walkTree: neverCalled('listings.walkTree'),
        nextWalked: neverCalled('listings.nextWalked'),
        endWalk: neverCalled('listings.endWalk'),
        watchTree: neverCalled('listings.watchTree'),
      },
      // Renames made by the host: this one does not (`renames` is false), so the component moves files
      // through wasi:filesystem and never calls `renameFiles`, `startRenames` or `renamed`.
      'xnat:archive/renames': {
        renames: () => false,
        renameFiles: neverCalled('renames.renameFiles'),
        startRenames: neverCalled('renames.startRenames'),
        renamed: neverCalled('renames.renamed'),
      },
      'xnat:archive/types': {}, // an interface of types only: nothing to provide
    };
    const exports = await this.#instantiate((path) => this.#module(path), imports);
    return f(exports);
  }
}
