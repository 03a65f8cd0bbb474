;; A no-op implementation of the library's own imports, xnat:archive/progress, xnat:archive/holders,
;; xnat:archive/digests, xnat:archive/listings and xnat:archive/renames, to be composed into the components for hosts that cannot
;; provide them (the wasmtime CLI: `run` and `serve`). See README.md.
;;
;; Strings passed in (`begin`'s phase, `alive`'s instance) are copied by the canonical ABI into this module's
;; memory through `cabi_realloc`: every one lands at address 64 (memory grows when one does not fit) and is
;; never read. Results that do not fit in a value are returned as a pointer to them: `this` returns the
;; empty string (pointer 0, length 0: the zeros at address 0) and `alive` returns `none` (the zero
;; discriminant at address 8). Addresses below 64 are never written.
;;
;; `computes` answers false, so the component hashes the files itself and never calls `digest-files`; were it
;; called, it would answer an empty list (the zeros at address 0) after dropping the folder it was lent (the
;; canonical ABI requires a callee to drop every borrowed handle before it returns).
;;
;; `lists` answers false too, so the component lists folders through wasi:filesystem and never calls
;; `list-folder`, `walk-tree`, `next-walked`, `end-walk` or `watch-tree`; were they called, `list-folder` and
;; `walk-tree` would answer `err(unsupported)` (the result at address 16: discriminant 1, then error-code 27 at
;; offset 4), which tells the component to list the folder itself, `next-walked` and `watch-tree` would answer
;; `none` (the zero discriminant at address 8) and `end-walk` would do nothing.
;;
;; `renames` answers false as well, so the component moves files through wasi:filesystem and never calls
;; `rename-files`, `start-renames` or `renamed`; were `rename-files` or `renamed` called, it would answer
;; `err({index: 0, code: unsupported})` (the result at address 32: discriminant 1, index 0 at offset 4,
;; error-code 27 at offset 8), which tells the component to move them itself, and `start-renames` would answer
;; `err(unsupported)` (address 16), each after dropping the two folders it was lent.
(module
  (import "wasi:filesystem/types@0.2.12" "[resource-drop]descriptor" (func $drop_descriptor (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\01\00\00\00\1b")
  (data (i32.const 32) "\01\00\00\00\00\00\00\00\1b")
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (if (i32.gt_u (i32.add (local.get $size) (i32.const 64)) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1))))))
    (i32.const 64))
  (func (export "xnat:archive/progress@0.1.0#begin") (param $phase_ptr i32) (param $phase_len i32) (param $total i64))
  (func (export "xnat:archive/progress@0.1.0#advance") (param $units i64))
  (func (export "xnat:archive/progress@0.1.0#end"))
  (func (export "xnat:archive/holders@0.1.0#this") (result i32) (i32.const 0))
  (func (export "xnat:archive/holders@0.1.0#alive") (param $instance_ptr i32) (param $instance_len i32) (result i32)
    (i32.const 8))
  (func (export "xnat:archive/digests@0.1.0#computes") (result i32) (i32.const 0))
  (func (export "xnat:archive/digests@0.1.0#digest-files") (param $folder i32) (param $paths_ptr i32)
    (param $paths_len i32) (param $algorithm i32) (result i32)
    (call $drop_descriptor (local.get $folder))
    (i32.const 0))
  (func (export "xnat:archive/listings@0.1.0#lists") (result i32) (i32.const 0))
  (func (export "xnat:archive/listings@0.1.0#list-folder") (param $folder i32) (param $path_ptr i32)
    (param $path_len i32) (result i32)
    (call $drop_descriptor (local.get $folder))
    (i32.const 16))
  (func (export "xnat:archive/listings@0.1.0#walk-tree") (param $folder i32) (param $path_ptr i32)
    (param $path_len i32) (result i32)
    (call $drop_descriptor (local.get $folder))
    (i32.const 16))
  (func (export "xnat:archive/listings@0.1.0#next-walked") (param $ticket i32) (result i32) (i32.const 8))
  (func (export "xnat:archive/listings@0.1.0#end-walk") (param $ticket i32))
  (func (export "xnat:archive/listings@0.1.0#watch-tree") (param $folder i32) (param $path_ptr i32)
    (param $path_len i32) (param $depth i32) (result i32)
    (call $drop_descriptor (local.get $folder))
    (i32.const 8))
  (func (export "xnat:archive/renames@0.1.0#renames") (result i32) (i32.const 0))
  (func (export "xnat:archive/renames@0.1.0#rename-files") (param $source i32) (param $destination i32)
    (param $pairs_ptr i32) (param $pairs_len i32) (result i32)
    (call $drop_descriptor (local.get $source))
    (call $drop_descriptor (local.get $destination))
    (i32.const 32))
  (func (export "xnat:archive/renames@0.1.0#start-renames") (param $source i32) (param $destination i32)
    (param $pairs_ptr i32) (param $pairs_len i32) (result i32)
    (call $drop_descriptor (local.get $source))
    (call $drop_descriptor (local.get $destination))
    (i32.const 16))
  (func (export "xnat:archive/renames@0.1.0#renamed") (param $ticket i32) (result i32) (i32.const 32))
)
