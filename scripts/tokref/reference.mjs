// Computes the expected ids and texts that pkg/tokenizer's tests compare
// against, with the JavaScript reference tokenizer @lenml/tokenizers (a fork
// of transformers.js) and the Jinja renderer of transformers.js
// (@huggingface/jinja). Run scripts/tokref/fetch.sh first. Writes
// .cache/tokref/expected.json.
//
// It first checks the reference itself against the Hugging Face goldens of
// the tiny test models and fails if they disagree.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const cache = path.join(root, ".cache", "tokref");

const need = (p) => {
  if (!fs.existsSync(p)) {
    console.error(`tokref: ${p} missing; run scripts/tokref/fetch.sh first`);
    process.exit(1);
  }
  return p;
};
const { TokenizerLoader } = await import(
  pathToFileURL(need(path.join(cache, "tokenizers/package/dist/main.mjs"))).href
);
const { Template, Environment } = await import(
  pathToFileURL(need(path.join(cache, "jinja/package/dist/index.js"))).href
);
// Python's Jinja lets render variables shadow globals such as strftime_now;
// this version refuses to, so allow it.
Environment.prototype.declareVariable = function (name, value) {
  this.variables.set(name, value);
  return value;
};
const readJSON = (p) => JSON.parse(fs.readFileSync(p, "utf8"));

// Chat templates that call strftime_now see this instant; the Go test pins
// its clock to the same one.
const fixedNow = "2025-03-07T10:04:05Z";
const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
function strftimeNow(format) {
  if (format !== "%d %b %Y") throw new Error(`strftime_now: format ${format} not supported here`);
  const d = new Date(fixedNow);
  return `${String(d.getUTCDate()).padStart(2, "0")} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()}`;
}

function load(dir) {
  const config = readJSON(path.join(dir, "tokenizer_config.json"));
  // transformers 5 writes this class name; the JS library knows it as the
  // generic fast tokenizer.
  if (config.tokenizer_class === "TokenizersBackend") config.tokenizer_class = "PreTrainedTokenizerFast";
  return TokenizerLoader.fromPreTrained({
    tokenizerJSON: readJSON(path.join(dir, "tokenizer.json")),
    tokenizerConfig: config,
  });
}

const noCleanup = { clean_up_tokenization_spaces: false };
// The JS library refuses to decode an empty list.
const decode = (tok, ids, opts) => (ids.length === 0 ? "" : tok.decode(ids, { ...noCleanup, ...opts }));

function encodeCase(tok, text) {
  const ids = tok.encode(text);
  const idsNoSpecial = tok.encode(text, { add_special_tokens: false });
  return {
    text,
    ids,
    ids_no_special: idsNoSpecial,
    decoded: decode(tok, idsNoSpecial, { skip_special_tokens: false }),
    decoded_skip_special: decode(tok, ids, { skip_special_tokens: true }),
  };
}

const tokenText = (config, name) => {
  const v = config[name];
  return v && typeof v === "object" ? v.content : v;
};

// render mirrors transformers' apply_chat_template(tokenize=False): the
// special tokens of tokenizer_config.json are template variables.
function render(source, config, chat) {
  const vars = {
    messages: chat.messages,
    add_generation_prompt: chat.add_generation_prompt,
    strftime_now: strftimeNow,
  };
  for (const name of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
    const v = tokenText(config, name);
    if (v != null) vars[name] = v;
  }
  return new Template(source).render(vars);
}

function sameIds(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// The reference must agree with Hugging Face where we have its goldens.
function checkAgainstGoldens() {
  let bad = 0;
  for (const model of ["tiny-llama", "tiny-qwen2"]) {
    const dir = path.join(root, "testdata", model, "model");
    const tok = load(dir);
    const golden = readJSON(path.join(root, "testdata", model, "golden.json"));
    for (const c of golden.tokenizer_cases) {
      const got = encodeCase(tok, c.text);
      if (!sameIds(got.ids, c.ids) || !sameIds(got.ids_no_special, c.ids_no_special) || got.decoded !== c.decoded) {
        console.error(`tokref: reference disagrees with HF golden on ${model} ${JSON.stringify(c.text)}`);
        bad++;
      }
    }
    const template = fs.readFileSync(path.join(dir, "chat_template.jinja"), "utf8");
    const config = readJSON(path.join(dir, "tokenizer_config.json"));
    for (const c of golden.chat_cases) {
      if (render(template, config, c) !== c.text) {
        console.error(`tokref: reference chat template disagrees with HF golden on ${model}`);
        bad++;
      }
    }
  }
  if (bad > 0) process.exit(1);
}

// Errors from the minified library would print a whole bundle line; keep
// the message only.
try {
  checkAgainstGoldens();

  const texts = readJSON(path.join(here, "texts.json"));
  const chats = readJSON(path.join(here, "chats.json"));
  // A real template that calls strftime_now, rendered with Llama 3.1's tokens.
  const llama32Template = fs.readFileSync(
    path.join(root, "pkg", "tokenizer", "testdata", "llama3_2_chat_template.jinja"),
    "utf8",
  );

  const out = { fixed_now: fixedNow, tokenizers: [] };
  for (const name of ["llama3_1", "qwen3"]) {
    const rel = path.join(name, "package", "models");
    const dir = path.join(cache, rel);
    const tok = load(dir);
    const config = readJSON(path.join(dir, "tokenizer_config.json"));
    const templates = { own: config.chat_template };
    if (name === "llama3_1") templates.llama3_2 = llama32Template;
    const entry = { name, dir: rel, cases: texts.map((t) => encodeCase(tok, t)), chats: [] };
    for (const [template, source] of Object.entries(templates)) {
      for (const chat of chats) {
        const text = render(source, config, chat);
        entry.chats.push({ template, ...chat, text, ids: tok.encode(text, { add_special_tokens: false }) });
      }
    }
    // The JS tokenizer's own (older) Jinja renders Llama 3.1's simple
    // template; it must agree with the newer renderer.
    if (name === "llama3_1") {
      for (const chat of chats) {
        const own = tok.apply_chat_template(chat.messages, {
          tokenize: false,
          add_generation_prompt: chat.add_generation_prompt,
        });
        if (own !== render(templates.own, config, chat)) {
          console.error("tokref: the two JavaScript renderers disagree on Llama 3.1's template");
          process.exit(1);
        }
      }
    }
    out.tokenizers.push(entry);
  }

  fs.writeFileSync(path.join(cache, "expected.json"), JSON.stringify(out, null, 1));
  console.log(`tokref: wrote ${path.join(cache, "expected.json")}`);
} catch (err) {
  console.error(`tokref: ${err.message}`);
  process.exit(1);
}
