# threadbox API or worker (the command picks which). Runs the TypeScript sources with tsx.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
USER node
EXPOSE 3000
CMD ["npx", "tsx", "src/cli/start.ts"]
