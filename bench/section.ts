/** What a benchmark section is: manifests it needs in the shared mesh, and a run on that mesh. */
import type { BenchMesh } from './mesh.js';
import type { PathName, SectionResult } from './report.js';

export interface BenchOptions {
  quick: boolean;
  /** Paths to measure; a section ignores the ones it has no use for. */
  paths: ReadonlySet<PathName>;
  /** Pod counts of the control-plane section (default 1,000 and 10,000; --quick 1,000). */
  controlPlanePods?: number[];
  /** Progress lines (stderr). */
  progress: (line: string) => void;
}

export interface BenchContext extends BenchOptions {
  mesh: BenchMesh;
  /** False when the mesh came up without connected agents (only non-mesh paths can run). */
  agentsConnected: boolean;
}

export interface Section {
  name: string;
  /** False when the section runs without the local mesh (default true). */
  needsMesh?: boolean;
  /** Manifest files (absolute paths) this section needs in the mesh for `paths`. */
  manifests(opts: BenchOptions): string[];
  run(ctx: BenchContext): Promise<SectionResult>;
}
