// Just enough of React's hook contract to drive one hook without a DOM or react-dom: state cells
// by call order, refs, memoized callbacks, and effects that run after render and clean up when
// their deps change or on unmount. Enough to check the hook's wiring, not React itself.

type Cell =
  | { kind: 'state'; value: unknown }
  | { kind: 'ref'; ref: { current: unknown } }
  | { kind: 'callback'; fn: unknown; deps: readonly unknown[] }
  | { kind: 'effect'; deps: readonly unknown[] | undefined; cleanup: (() => void) | void };

let cells: Cell[] = [];
let index = 0;
let pending: Array<() => void> = [];
/** Set by a state update; render() then renders again, as React would schedule it. */
let dirty = false;

const sameDeps = (a: readonly unknown[] | undefined, b: readonly unknown[] | undefined) =>
  a !== undefined && b !== undefined && a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

export function useState<T>(init: T | (() => T)): [T, (v: T | ((prev: T) => T)) => void] {
  const i = index++;
  if (!cells[i]) cells[i] = { kind: 'state', value: typeof init === 'function' ? (init as () => T)() : init };
  const cell = cells[i] as { kind: 'state'; value: T };
  const set = (v: T | ((prev: T) => T)) => {
    const next = typeof v === 'function' ? (v as (prev: T) => T)(cell.value) : v;
    if (!Object.is(next, cell.value)) dirty = true;
    cell.value = next;
  };
  return [cell.value, set];
}

export function useRef<T>(init: T): { current: T } {
  const i = index++;
  if (!cells[i]) cells[i] = { kind: 'ref', ref: { current: init } };
  return (cells[i] as { ref: { current: T } }).ref;
}

export function useCallback<T>(fn: T, deps: readonly unknown[]): T {
  const i = index++;
  const cell = cells[i] as { kind: 'callback'; fn: T; deps: readonly unknown[] } | undefined;
  if (cell && sameDeps(cell.deps, deps)) return cell.fn;
  cells[i] = { kind: 'callback', fn, deps };
  return fn;
}

export function useEffect(fn: () => (() => void) | void, deps?: readonly unknown[]): void {
  const i = index++;
  const cell = cells[i] as { kind: 'effect'; deps: readonly unknown[] | undefined; cleanup: (() => void) | void } | undefined;
  if (cell && sameDeps(cell.deps, deps)) return;
  pending.push(() => {
    if (cell?.cleanup) cell.cleanup();
    cells[i] = { kind: 'effect', deps, cleanup: fn() };
  });
}

export function renderHook<P, R>(hook: (props: P) => R, initialProps: P) {
  cells = [];
  let props = initialProps;
  let current!: R;
  const render = () => {
    for (let pass = 0; pass < 10; pass++) {
      dirty = false;
      index = 0;
      current = hook(props);
      const effects = pending;
      pending = [];
      for (const e of effects) e();
      if (!dirty) return;
    }
    throw new Error('render loop');
  };
  render();
  return {
    get result() {
      return current;
    },
    rerender(next?: P) {
      if (next !== undefined) props = next;
      render();
    },
    unmount() {
      for (const c of cells) if (c?.kind === 'effect' && c.cleanup) c.cleanup();
      cells = [];
    },
  };
}
