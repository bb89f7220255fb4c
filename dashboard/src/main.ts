import { createApp } from 'vue'
import App from './App.vue'
import { router } from './router'
import { restoreSession } from './session'
import { locale } from './i18n'
import './styles/main.css'

document.documentElement.lang = locale.value

void restoreSession().finally(() => {
  createApp(App).use(router).mount('#app')
})
