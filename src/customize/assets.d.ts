// `import p from "x.wasm" with { type: "file" }`: Bun gives the file's path (inside a compiled binary, its embedded copy).
declare module "*.wasm" {
  const path: string;
  export default path;
}

// `import s from "x.sh" with { type: "text" }`: the script's text, embedded at build time.
declare module "*.sh" {
  const text: string;
  export default text;
}
