# threadbox API or worker (the command picks which). Runs the TypeScript sources with tsx.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# Scripts skipped: the build (npm's `prepare`) needs the sources, copied below.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY playground ./playground
COPY scripts ./scripts
RUN npx tsx scripts/build-ui.ts
USER node
EXPOSE 3000
CMD ["npx", "tsx", "src/cli/start.ts"]
