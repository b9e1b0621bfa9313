// Pull progress as the Images view draws it: one bar per layer and an overall bar, from the
// stream of events pull_image sends.

import type { PullEvent } from "./bindings";

export interface LayerProgress {
  id: string;
  status: string;
  current: number;
  total: number;
  done: boolean;
}

export interface PullState {
  layers: LayerProgress[];
  messages: string[];
}

const DONE = ["Pull complete", "Already exists", "Download complete"];

export function emptyPull(): PullState {
  return { layers: [], messages: [] };
}

/** Folds one event into the state (a new object, for Svelte's reactivity). */
export function applyPullEvent(state: PullState, ev: PullEvent): PullState {
  if (ev.kind === "status") {
    return { ...state, messages: [...state.messages, ev.text] };
  }
  const layers = state.layers.slice();
  let i = layers.findIndex((l) => l.id === ev.id);
  if (i < 0) {
    layers.push({ id: ev.id, status: "", current: 0, total: 0, done: false });
    i = layers.length - 1;
  }
  const old = layers[i];
  const done = old.done || DONE.includes(ev.status);
  const total = ev.total > 0 ? ev.total : old.total;
  // Only download bytes count: extraction restarts the counter at 0 of the same total.
  const downloading = ev.status === "Downloading";
  const current = done ? total : downloading ? ev.current : old.current;
  layers[i] = { id: ev.id, status: ev.status, total, current, done };
  return { ...state, layers };
}

/** 0..1 over every layer whose size is known; 1 once every layer is done. */
export function overallProgress(state: PullState): number {
  if (state.layers.length > 0 && state.layers.every((l) => l.done)) return 1;
  const sized = state.layers.filter((l) => l.total > 0);
  const total = sized.reduce((a, l) => a + l.total, 0);
  if (total === 0) return 0;
  return Math.min(1, sized.reduce((a, l) => a + Math.min(l.current, l.total), 0) / total);
}
