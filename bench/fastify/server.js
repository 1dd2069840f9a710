'use strict'
// The seed's stack for comparison: Fastify + @fastify/http-proxy forwarding /api/v1/* upstream.
// POLICIES=1 adds what the seed had on a protected route: @fastify/rate-limit (in memory, a limit
// that never triggers), @fastify/jwt verification of every request, and Fastify's pino logger at
// info (its request log, like the gateway's access log).
const policies = process.env.POLICIES === '1'
const app = require('fastify')({ logger: policies ? { level: 'info' } : false })

async function main () {
  if (policies) {
    await app.register(require('@fastify/rate-limit'), { max: 100000000, timeWindow: 60000 })
    await app.register(require('@fastify/jwt'), { secret: process.env.JWT_SECRET })
    app.addHook('onRequest', async (request) => {
      if (request.url.startsWith('/api/')) await request.jwtVerify()
    })
  }
  await app.register(require('@fastify/http-proxy'), {
    upstream: process.env.UPSTREAM,
    prefix: '/api/v1',
    rewritePrefix: '/api/v1'
  })
  app.get('/live', async () => ({ status: 'ok' }))
  await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
