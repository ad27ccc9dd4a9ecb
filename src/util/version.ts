// Which Bunker this is: the release from package.json and the build, a git commit stamped in by
// deploy/build.ts (`define: BUNKER_BUILD`), or "dev" when run from source.
import pkg from "../../package.json" with { type: "json" };

/** Replaced by deploy/build.ts with the git commit the binary was built from; undeclared otherwise. */
declare const BUNKER_BUILD: string;

export const VERSION: string = pkg.version;
export const BUILD: string = typeof BUNKER_BUILD === "string" ? BUNKER_BUILD : "dev";
/** Semver with the build as build metadata ("0.1.0+dev"): what the admin API reports. */
export const VERSION_WITH_BUILD = `${VERSION}+${BUILD}`;
/** What `bunker --version` prints. */
export const VERSION_LINE = `bunker ${VERSION} (build ${BUILD})`;
