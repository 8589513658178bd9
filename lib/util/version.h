#pragma once
// secateur's version and the git commit it was built from. The commit lives in one generated
// translation unit (build/generated/version.cpp), not in compile definitions, so a new commit
// recompiles one file instead of every target.
namespace secateur::version {

const char* number();      // "0.1.0"
const char* git_commit();  // short hash, or "unknown" outside a git checkout

}  // namespace secateur::version
