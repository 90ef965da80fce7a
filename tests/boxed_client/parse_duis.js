// Test code: parses DUIS documents with @smartdcc/duis-parser (the DCC Boxed client's parser),
// all in one node process. Reads a JSON array of file paths (argv[2]); prints one JSON array of
// results in the same order: {"ok": true, "duis": <parseDuis('simplified', xml)>} or
// {"ok": false, "error": "..."}. BigInt counters become decimal strings.
'use strict'
const { readFileSync } = require('node:fs')
const { parseDuis } = require('@smartdcc/duis-parser')

const paths = JSON.parse(readFileSync(process.argv[2], 'utf-8'))
const results = paths.map((path) => {
  try {
    return { ok: true, duis: parseDuis('simplified', readFileSync(path)) }
  } catch (error) {
    return { ok: false, error: String(error && error.message ? error.message : error) }
  }
})
process.stdout.write(JSON.stringify(results, (key, value) => (typeof value === 'bigint' ? value.toString() : value)))
