/**
 * string-width for the bundled CLI (scripts/build.mjs): cliui, wrap-ansi and yargs measure every
 * piece of --help with it. string-width builds Unicode-property regexes (\p{RGI_Emoji}, with the v
 * flag) and an Intl.Segmenter when it is loaded, tens of ms, and string-width 7 (cliui's, wrap-ansi's)
 * segments even plain ASCII. muster's usage text is printable ASCII, whose width is its length (the
 * fast path of string-width 8 itself); any other string goes to the real string-width 8, loaded on
 * first need (esbuild evaluates a require()d module when it is first required).
 */
let real;

export default function stringWidth(input, options) {
  if (typeof input === 'string' && /^[\u0020-\u007E]*$/.test(input)) return input.length;
  real ??= require('string-width').default;
  return real(input, options);
}
