// Target-side scripts are imported as text (STYLE.md: real .sh files, embedded in the binary).
declare module "*.sh" {
  const text: string;
  export default text;
}
declare module "*.wasm" {
  const path: string;
  export default path;
}
